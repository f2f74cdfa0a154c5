"""Signal processing on arrays: online filters, quality, montage mapping, resampling, windowing."""
