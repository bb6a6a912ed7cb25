from embedscope.cli import main

raise SystemExit(main())
