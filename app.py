"""Start the trainer's web GUI.

    python app.py [--listen ADDR] [--port N] [--share] [--inbrowser] [--username U --password P]
                  [--no-auth] [--root DIR ...] [--outputs DIR]

Every route needs a sign-in: by default a random token in the URL printed at start (kept in a
cookie afterwards), or --username/--password. --no-auth is for loopback only.
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
    parser.add_argument("--username", help="sign in with this user name (instead of the token)")
    parser.add_argument("--password", help="sign in with this password (instead of the token)")
    parser.add_argument("--no-auth", action="store_true",
                        help="no token and no password (refused with --share or an --listen "
                             "address beyond this machine)")
    parser.add_argument("--root", action="append", default=[], metavar="DIR",
                        help="another folder the page may browse, read and write (repeatable); "
                             "besides it only the outputs and ./datasets folders and the bundled "
                             "demo and presets are")
    parser.add_argument("--preset", metavar="NAME",
                        help=f"the preset the Train tab starts with (default: {DEMO_PRESET}, the "
                             "bundled demo that trains on any machine in minutes; 'none' for the "
                             "plain defaults)")
    parser.add_argument("--outputs", default="outputs", metavar="DIR",
                        help="where new run folders are proposed (default: ./outputs)")
    return parser.parse_args(argv)


def make_auth(args):
    from ui.auth import Auth

    if args.password:
        return Auth(username=args.username, password=args.password, port=args.port)
    return Auth.with_token(args.port)


def refusal(args) -> str | None:
    """The one-line error for options that do not go together, if any."""
    if bool(args.username) != bool(args.password):
        return "--username and --password go together; give both or neither"
    if args.no_auth and args.password:
        return "--no-auth and --username/--password contradict each other; give one"
    if args.no_auth and (args.listen not in LOCAL_ADDRESSES or args.share):
        where = "--share" if args.share else f"--listen {args.listen}"
        return (f"{where} with --no-auth would let anyone who reaches the port read your files "
                "and run code; drop --no-auth (a token is used) or give --username/--password")
    missing = [root for root in args.root if not os.path.isdir(root)]
    return f"--root {missing[0]}: not a folder" if missing else None


def main(argv=None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    problem = refusal(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
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
    # TensorBoard has no sign-in of its own: it serves this machine only.
    ctx = AppContext(workspace, Runner(workspace).start(), TensorBoards(),
                     start_preset=start_preset)
    app = build_app(ctx=ctx)
    from ui.app import CSS
    from ui.serve import launch

    auth = None if args.no_auth else make_auth(args)
    urls = launch(app, workspace, auth, args.listen, args.port, share=args.share, css=CSS)
    url = urls[0].replace(f"//{args.listen}:", f"//{public_host}:", 1)
    print(f"GUI ready at {url} in {time.monotonic() - started:.1f} s "
          f"(runs go to {workspace.outputs})", flush=True)
    if len(urls) > 1:
        print(f"public link: {urls[1]}", flush=True)
    if args.inbrowser:
        import webbrowser

        webbrowser.open(urls[0])
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
