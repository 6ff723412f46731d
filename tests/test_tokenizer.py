import copy
import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from nvg_core import official
from nvg_core.structure import validate
from nvg_core.tokenizer import TOKENIZER_CONFIGS, NVGTokenizer, TokenizerConfig, parameter_counts

AE_KEYS = Path(__file__).resolve().parent / "data" / "official-keys" / "ae.json"


@pytest.fixture(scope="module")
def tokenizer():
    torch.manual_seed(0)
    return NVGTokenizer.from_spec(TOKENIZER_CONFIGS["tiny"]).eval()


def test_encode_shapes_and_decode_round_trip(tokenizer):
    cfg = tokenizer.spec
    pixels = torch.rand(3, 3, cfg.resolution, cfg.resolution) * 2 - 1
    with torch.no_grad():
        out = tokenizer.encode(pixels)
        N, S = cfg.grid_size**2, cfg.num_stages
        assert out.latent_BNC.shape == (3, N, cfg.latent_channels)
        assert out.labels_BSN.shape == (3, S, N) and out.canvases_BSNC.shape == (3, S, N, cfg.latent_channels)
        assert [ids.shape for ids in out.ids] == [(3, 2**i) for i in range(S)]
        validate(out.labels_BSN)
        torch.testing.assert_close(tokenizer.decode_ids(out.codes_BSN), out.final_BNC)
        images = tokenizer.decode_latent(out.final_BNC)
    assert images.shape == pixels.shape and images.min() >= -1 and images.max() <= 1


def test_codes_are_constant_within_each_cluster(tokenizer):
    with torch.no_grad():
        out = tokenizer.tokenize(torch.randn(2, 16, 4))
    for s in range(out.labels_BSN.shape[1]):
        for b in range(2):
            for label in out.labels_BSN[b, s].unique():
                assert out.codes_BSN[b, s][out.labels_BSN[b, s] == label].unique().numel() == 1


def test_canvases_are_cumulative_stage_terms(tokenizer):
    with torch.no_grad():
        out = tokenizer.tokenize(torch.randn(2, 16, 4))
        after = tokenizer.canvas_after_each_stage(out.codes_BSN)
        for s in range(out.labels_BSN.shape[1] - 1):
            step = tokenizer.stage_term(out.codes_BSN[:, s], s)
            torch.testing.assert_close(out.canvases_BSNC[:, s + 1], out.canvases_BSNC[:, s] + step)
            torch.testing.assert_close(after[:, s], out.canvases_BSNC[:, s + 1])
        torch.testing.assert_close(after[:, -1], out.final_BNC)
    assert (out.canvases_BSNC[:, 0] == 0).all()


def test_stage_term_leaves_its_inputs_alone(tokenizer):
    ids_BN = torch.randint(tokenizer.spec.codebook_size, (2, 16))
    before = ids_BN.clone()
    with torch.no_grad():
        first, second = tokenizer.stage_term(ids_BN, 3), tokenizer.stage_term(ids_BN, 3)
    assert torch.equal(ids_BN, before) and torch.equal(first, second)


def test_reconstruction_error_falls_with_stages():
    torch.manual_seed(1)
    tokenizer = NVGTokenizer.from_spec(TokenizerConfig(resolution=16, base_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                                             latent_channels=4, codebook_size=256, grid_size=4, unshuffle=2, phi_ratio=0.0))
    latent = torch.randn(8, 16, 4)
    with torch.no_grad():  # a codebook at many scales, so every residual has a useful code
        V = tokenizer.spec.codebook_size
        tokenizer.quantize.embedding.weight.copy_(torch.randn(V, 4) * torch.logspace(-1.5, 0.3, V)[:, None])
    with torch.no_grad():
        out = tokenizer.tokenize(latent)
        errors = [(out.canvases_BSNC[:, s] - latent).pow(2).mean().item() for s in range(1, 5)]
        errors.append((out.final_BNC - latent).pow(2).mean().item())
    assert errors[-1] < errors[0] * 0.5
    assert all(b <= a * 1.05 for a, b in zip(errors, errors[1:]))


def test_channels_last_and_contiguous_pixels_encode_alike(tokenizer):
    pixels = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    channels_last = pixels.to(memory_format=torch.channels_last)  # what images.to_pixels returns
    with torch.no_grad():
        assert torch.equal(tokenizer.encode_latent(channels_last), tokenizer.encode_latent(pixels))


def test_training_forward_gives_gradients_to_every_part(tokenizer):
    tokenizer.train()
    recon, vq_loss = tokenizer(torch.rand(2, 3, 16, 16) * 2 - 1)
    ((recon - 0.1).abs().mean() + vq_loss).backward()
    tokenizer.eval()
    for part in (tokenizer.encoder.conv_in, tokenizer.decoder.conv_out, tokenizer.quantize.embedding, tokenizer.quantize.quant_resi[2]):
        assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0
    tokenizer.zero_grad()


def test_grid_mismatch_in_config_is_refused():
    with pytest.raises(ValueError, match="gives grid"):
        TokenizerConfig(resolution=64, channel_mult=(1, 2), unshuffle=1, grid_size=16)


def official_state_dict():
    """An official-style ae.ckpt state_dict (shapes from the key list) with the extra EMA and loss keys."""
    keys = json.loads(AE_KEYS.read_text())["keys"]
    state = {k: torch.zeros(shape, dtype=torch.long if k == "total_visited_codes" else torch.float32, device="meta")
             for k, shape in keys.items()}
    state["ema_model.encoder.conv_in.conv.weight"] = torch.zeros(128, 3, 3, 3, device="meta")
    state["loss.discriminator.head.weight"] = torch.zeros(4, device="meta")
    return state


def test_official_ae_keys_and_shapes_convert_exactly():
    converted, config = official.convert_official_ae(official_state_dict())
    assert config == TOKENIZER_CONFIGS["official-f16"]  # the architecture is read from the shapes
    with torch.device("meta"):
        model = NVGTokenizer.from_spec(TOKENIZER_CONFIGS["official-f16"])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == ours
    assert len(ours) == 287  # the 288 official entries minus total_visited_codes
    assert parameter_counts(model)["total"] == 110_332_355
    assert parameter_counts(model)["encoder"] == 45_025_696 and parameter_counts(model)["decoder"] == 65_092_355
    model.load_state_dict(converted, assign=True)


def test_official_ae_conversion_names_missing_keys():
    state = official_state_dict()
    del state["decoder.conv_out.conv.weight"]
    with pytest.raises(ValueError, match=re.escape("missing ['decoder.conv_out.weight']")):
        official.convert_official_ae(state)


def test_save_pretrained_round_trip_is_exact_in_fp32_and_close_in_half_precision(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "fp32")
    loaded = NVGTokenizer.from_pretrained(tmp_path / "fp32")
    assert loaded.spec == tokenizer.spec and loaded.dtype == torch.float32
    for (k, a), b in zip(tokenizer.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    copy.deepcopy(tokenizer).to(torch.float16).save_pretrained(tmp_path / "half", variant="fp16")
    assert (tmp_path / "half" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    small = NVGTokenizer.from_pretrained(tmp_path / "half", variant="fp16", dtype=torch.float32)
    w = tokenizer.decoder.conv_out.weight
    assert small.decoder.conv_out.weight.dtype == torch.float32
    torch.testing.assert_close(small.decoder.conv_out.weight, w, atol=1e-2 * w.abs().max().item(), rtol=1e-2)
    assert NVGTokenizer.from_pretrained(tmp_path / "fp32", dtype=torch.bfloat16).dtype == torch.bfloat16


def test_loading_missing_corrupt_or_mismatched_folders_gives_clear_errors(tokenizer, tmp_path):
    with pytest.raises(OSError, match="config.json"):
        NVGTokenizer.from_pretrained(tmp_path / "nothing")
    tokenizer.save_pretrained(tmp_path / "a")
    (tmp_path / "a" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(OSError, match="Unable to load weights"):
        NVGTokenizer.from_pretrained(tmp_path / "a")
    NVGTokenizer.from_spec(dataclasses.replace(tokenizer.spec, codebook_size=32)).save_pretrained(tmp_path / "b")
    (tmp_path / "b" / "diffusion_pytorch_model.safetensors").replace(tmp_path / "a" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(RuntimeError, match="size mismatch for quantize.embedding.weight"):
        NVGTokenizer.from_pretrained(tmp_path / "a")
    config_path = tmp_path / "b" / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "grid_size": 3}))
    with pytest.raises(ValueError, match="gives grid 4, not 3"):  # the config dataclass checks the sizes
        NVGTokenizer.from_config(NVGTokenizer.load_config(tmp_path / "b"))


def test_damaged_torch_checkpoint_is_reported_as_unreadable_not_unsafe(tmp_path):
    garbage, truncated = tmp_path / "garbage.ckpt", tmp_path / "truncated.ckpt"
    garbage.write_bytes(b"definitely not a checkpoint")
    torch.save({"state_dict": {"w": torch.ones(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    for path in (garbage, truncated):
        with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
            official.load_torch_checkpoint(path)


class Opaque:
    """A picklable non-tensor object, like Lightning's metadata."""


def test_torch_checkpoints_with_pickled_objects_need_an_explicit_opt_in(tmp_path):
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": Opaque()}, path)
    with pytest.raises(ValueError, match="cannot be loaded safely.*allow_unsafe=True"):
        official.load_torch_checkpoint(path)
    state, hyper_parameters = official.load_torch_checkpoint(path, allow_unsafe=True)
    assert torch.equal(state["w"], torch.ones(2)) and hyper_parameters == {}  # not a mapping: ignored
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 3, "hyper_parameters": {"depth": 2}}, plain)
    state, hyper_parameters = official.load_torch_checkpoint(plain)
    assert torch.equal(state["w"], torch.zeros(3)) and hyper_parameters == {"depth": 2}
    with pytest.raises(FileNotFoundError):
        official.load_torch_checkpoint(tmp_path / "missing.ckpt")
