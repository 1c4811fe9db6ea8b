from trainer.commands import main

raise SystemExit(main())
