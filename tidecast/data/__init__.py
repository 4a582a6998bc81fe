"""The data layer: read a source, bring it to the canonical long format, clean it, build features.

* :mod:`tidecast.data.sources` - files, fsspec URLs and SQL read as a raw frame, and its fingerprint;
* :mod:`tidecast.data.long_format` - the raw frame as ``unique_id, ds, y, ...`` (ids, UTC times, floats);
* :mod:`tidecast.data.clean` - duplicates, regular grid, gaps and outliers, with a change log
  (one series' work in :mod:`tidecast.data.clean_series`);
* :mod:`tidecast.data.features` - calendar, Fourier, lag and rolling features (no look-ahead);
* :mod:`tidecast.data.target` - invertible target transforms;
* :mod:`tidecast.data.hierarchy`, :mod:`tidecast.data.partitions`, :mod:`tidecast.data.profile`
  - hierarchies of series, on-disk partitions of whole series, profiling a user's file.

The layer imports only the spec and the leaves (frames, calendar, durations, errors), never models/.
"""
