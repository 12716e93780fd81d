from lgvq.cli import main

raise SystemExit(main())
