"""The data layer: read a source, bring it to the canonical long format, clean it, build features.

* :mod:`tidecast.data.sources` - files, fsspec URLs and SQL into ``unique_id, ds, y, ...``;
* :mod:`tidecast.data.clean` - duplicates, regular grid, gaps and outliers, with a change log;
* :mod:`tidecast.data.features` - calendar, Fourier, lag and rolling features (no look-ahead);
* :mod:`tidecast.data.target` - invertible target transforms.
"""
