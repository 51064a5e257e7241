//! Windows container layer import: the backuptar dialect and the CIM layer writer.

pub mod backuptar;
