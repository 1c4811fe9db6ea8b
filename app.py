"""Start the trainer's web GUI: python app.py [--listen ADDR] [--port N] [--share] [--inbrowser]."""

from __future__ import annotations

import argparse
import os
import sys

# No phoning home: this machine may be offline, and a local tool has no business reporting usage.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Stable Diffusion DreamBooth / LoRA trainer GUI")
    parser.add_argument("--listen", default="127.0.0.1", metavar="ADDR",
                        help="address to serve on (0.0.0.0 for the whole network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    parser.add_argument("--inbrowser", action="store_true", help="open the page in the browser")
    parser.add_argument("--username", help="user name required to open the page")
    parser.add_argument("--password", help="password required to open the page")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if bool(args.username) != bool(args.password):
        print("error: --username and --password go together; give both or neither", file=sys.stderr)
        return 2
    if args.listen not in ("127.0.0.1", "localhost", "::1") and not args.password:
        print(f"warning: serving on {args.listen} without --username/--password: anyone on the "
              "network can start training runs and read your files", file=sys.stderr)
    from ui import build_app

    app = build_app()
    auth = (args.username, args.password) if args.username else None
    app.queue().launch(server_name=args.listen, server_port=args.port, share=args.share,
                       inbrowser=args.inbrowser, auth=auth, show_error=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
