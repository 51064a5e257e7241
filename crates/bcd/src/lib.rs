//! Boot Configuration Data stores (BCD), on top of regf.
