import argparse
import logging
import os

import uvicorn

from .app import create_app
from .config import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8765")))
    parser.add_argument("--state-file", default=os.environ.get("SANDBOX_STATE_FILE"))
    parser.add_argument("--api-key", help="overrides TRACKSTAR_API_KEY")
    parser.add_argument("--webhook-url", help="overrides TRACKSTAR_SANDBOX_WEBHOOK_URL")
    parser.add_argument("--webhook-secret", help="overrides TRACKSTAR_WEBHOOK_SECRET")
    parser.add_argument("--get-rate", type=float, help="overrides SANDBOX_GET_RATE")
    parser.add_argument("--write-rate", type=float, help="overrides SANDBOX_WRITE_RATE")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()

    settings = Settings.from_env()
    settings.state_file = args.state_file
    for name in ("api_key", "webhook_url", "webhook_secret", "get_rate", "write_rate"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    logging.basicConfig(level=args.log_level.upper())
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
