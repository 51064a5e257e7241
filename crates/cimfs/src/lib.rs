//! CimFS images: the on-disk format, a writer and a reader.
