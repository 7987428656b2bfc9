from locpipe.cli import main

raise SystemExit(main())
