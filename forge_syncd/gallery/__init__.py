"""`forge-sync-gallery`: a read-only web gallery over the SQLite catalog (SPEC round 3).

`catalog.py` reads the catalog (read-only, through `catalog/sqlite_search.py`), `files.py`
opens the files it lists (under media_root only, no symlink), `thumbs.py` makes WebP
thumbnails keyed by content sha256, `pages.py` renders HTML (every value escaped), `app.py`
is the web application and `serve.py` the process.
"""
