"""NVG Studio web app from a clone: `python app.py [--host H] [--port P] [--share] [--model DIR_OR_ID]`.

Also the entry point of a Hugging Face Space (app_file: app.py). An installed wheel runs the same app as
`nvg-studio`; both are app/server.py.
"""

from app.server import main

if __name__ == "__main__":
    main()
