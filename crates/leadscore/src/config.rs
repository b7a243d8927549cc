//! Optional `leadscore.toml`: defaults that flags and `LEADSCORE_*` variables override.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data: Option<PathBuf>,
    pub database_url: Option<String>,
    pub addr: Option<String>,
    pub admin_key: Option<String>,
}

impl Settings {
    /// Reads `path`, or `./leadscore.toml` when it exists; no file means defaults.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let default = PathBuf::from("leadscore.toml");
                if !default.exists() {
                    return Ok(Self::default());
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{} is not a valid leadscore.toml", path.display()))
    }
}
