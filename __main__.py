from centralino.cli import main

raise SystemExit(main())
