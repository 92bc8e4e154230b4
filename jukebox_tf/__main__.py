from jukebox_tf.cli import main

raise SystemExit(main())
