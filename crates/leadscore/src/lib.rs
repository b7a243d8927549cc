//! What of the `leadscore` command line is needed outside the binary: reading CSV files as
//! `leadscore import` does, for the CSV importer's fuzz target (`fuzz/`) and its tests.

pub mod csv_rows;
