from trainer.commands import main, prepare_process

prepare_process()
raise SystemExit(main())
