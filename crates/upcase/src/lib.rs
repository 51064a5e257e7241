//! Windows case mapping (the NTFS $UpCase table) and case-insensitive name ordering.
