from bioprune.cli import main

raise SystemExit(main())
