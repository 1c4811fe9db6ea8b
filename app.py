"""Start the trainer's web GUI.

    python app.py [--listen ADDR] [--port N] [--share] [--inbrowser] [--username U --password P]
                  [--root DIR ...] [--outputs DIR]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

# No phoning home: this machine may be offline, and a local tool has no business reporting usage.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")
DEMO_PRESET = "demo-dreambooth"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Stable Diffusion DreamBooth / LoRA trainer GUI")
    parser.add_argument("--listen", default="127.0.0.1", metavar="ADDR",
                        help="address to serve on (0.0.0.0 for the whole network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    parser.add_argument("--inbrowser", action="store_true", help="open the page in the browser")
    parser.add_argument("--username", help="user name required to open the page")
    parser.add_argument("--password", help="password required to open the page")
    parser.add_argument("--root", action="append", default=[], metavar="DIR",
                        help="another folder the page may browse and show files from (repeatable); "
                             "the working directory always is one")
    parser.add_argument("--preset", metavar="NAME",
                        help=f"the preset the Train tab starts with (default: {DEMO_PRESET}, the "
                             "bundled demo that trains on any machine in minutes; 'none' for the "
                             "plain defaults)")
    parser.add_argument("--outputs", default="outputs", metavar="DIR",
                        help="where new run folders are proposed (default: ./outputs)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    if bool(args.username) != bool(args.password):
        print("error: --username and --password go together; give both or neither", file=sys.stderr)
        return 2
    if args.listen not in LOCAL_ADDRESSES and not args.password:
        print(f"warning: serving on {args.listen} without --username/--password: anyone on the "
              "network can start training runs and read your files", file=sys.stderr)
    missing = [root for root in args.root if not os.path.isdir(root)]
    if missing:
        print(f"error: --root {missing[0]}: not a folder", file=sys.stderr)
        return 2

    from ui import build_app
    from ui.context import AppContext
    from ui.runner import Runner
    from ui.tensorboard import TensorBoards
    from ui.workspace import Workspace

    workspace = Workspace.create(outputs=args.outputs, roots=args.root)
    from ui.presets import list_presets

    presets = list_presets(workspace)
    start_preset = args.preset or (DEMO_PRESET if DEMO_PRESET in presets else "none")
    start_preset = None if start_preset.lower() == "none" else start_preset
    if start_preset is not None and start_preset not in presets:
        print(f"error: --preset {start_preset}: no such preset (the names are those of the "
              "Preset list, or 'none')", file=sys.stderr)
        return 2
    public_host = socket.gethostname() if args.listen in ("0.0.0.0", "::") else args.listen
    ctx = AppContext(workspace, Runner(workspace).start(), TensorBoards(args.listen, public_host),
                     start_preset=start_preset)
    app = build_app(ctx=ctx)
    auth = (args.username, args.password) if args.username else None
    from ui.app import CSS

    app.queue(default_concurrency_limit=4).launch(
        server_name=args.listen, server_port=args.port, share=args.share, inbrowser=args.inbrowser,
        auth=auth, show_error=True, allowed_paths=[str(r) for r in workspace.roots], css=CSS,
        prevent_thread_lock=True, quiet=True)
    print(f"GUI ready at http://{public_host}:{args.port}/ in {time.monotonic() - started:.1f} s "
          f"(runs go to {workspace.outputs})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("closing the GUI; running trainers keep going and are found again on the next start")
    finally:
        ctx.tensorboards.close()
        app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
