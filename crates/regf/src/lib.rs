//! Windows registry hive files (regf): parse, edit, write, merge differencing hives.
