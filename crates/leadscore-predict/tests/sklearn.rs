//! The comparison with scikit-learn (`scripts/predictive_compare.sh`): runs when
//! `LEADSCORE_TEST_SKLEARN=1` and the shared data sets are found (`LEADSCORE_SHARED_DATA`, or
//! `../shared/data` beside the repository), else says it is skipped.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn leadscore_matches_scikit_learn_on_the_shared_data() {
    if std::env::var("LEADSCORE_TEST_SKLEARN").as_deref() != Ok("1") {
        eprintln!("skipped: set LEADSCORE_TEST_SKLEARN=1 to compare with scikit-learn");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = std::env::var_os("LEADSCORE_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| root.join("../shared/data"));
    if !data.join("leads_x_education.csv").is_file() {
        eprintln!("skipped: no shared data in {} (set LEADSCORE_SHARED_DATA)", data.display());
        return;
    }
    let output = Command::new("bash").arg(root.join("scripts/predictive_compare.sh")).arg(&data).current_dir(&root).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(output.status.success(), "scripts/predictive_compare.sh failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("| X Education leads |") && stdout.contains("| UCI bank marketing |"), "{stdout}");
}
