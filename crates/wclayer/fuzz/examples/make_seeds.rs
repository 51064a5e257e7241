//! Writes seed corpora for both targets into corpus/backuptar and corpus/import (run from
//! crates/wclayer/fuzz: `cargo run --example make_seeds`).

use std::path::Path;

use wclayer_fuzz::{base_layer, child_layer, write_seed};

fn main() {
    let bt = Path::new("corpus/backuptar");
    for (i, text) in [
        "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;;0x1200a9;;;BU)",
        "O:S-1-5-21-1-2-3-500G:SYD:(OA;CI;0x100;01234567-89ab-cdef-0123-456789abcdef;;AU)S:(AU;FA;FA;;;WD)",
        "D:NO_ACCESS_CONTROL",
        "O:SYG:SYS:(ML;;NW;;;HI)",
    ]
    .iter()
    .enumerate()
    {
        write_seed(bt, &format!("sddl-{i}"), &[0], text.as_bytes());
        let bin = wclayer::backuptar::sddl_to_security_descriptor(text).expect("seed SDDL");
        write_seed(bt, &format!("sd-{i}"), &[1], &bin);
    }
    let ea = wclayer::backuptar::encode_extended_attributes(&[
        wclayer::backuptar::ExtendedAttribute {
            name: "a".into(),
            value: vec![1, 2, 3],
            flags: 0,
        },
        wclayer::backuptar::ExtendedAttribute {
            name: "longer.name".into(),
            value: vec![9; 40],
            flags: 0x80,
        },
    ])
    .expect("seed EAs");
    write_seed(bt, "ea", &[2], &ea);
    for (i, (target, mount)) in [(r"C:\ProgramData", true), (r"..\x\y", false)]
        .iter()
        .enumerate()
    {
        let rp = wclayer::backuptar::encode_reparse_point(&wclayer::backuptar::ReparsePoint {
            target: target.to_string(),
            is_mount_point: *mount,
        })
        .expect("seed reparse point");
        write_seed(bt, &format!("reparse-{i}"), &[3], &rp);
    }
    write_seed(bt, "time", &[4], b"1650000000.1234567");
    write_seed(
        bt,
        "filetime",
        &[4],
        &132_000_000_001_234_567u64.to_le_bytes(),
    );
    write_seed(
        bt,
        "sid",
        &[5],
        b"S-1-5-21-1004336348-1177238915-682003330-512",
    );
    write_seed(
        bt,
        "pax",
        &[6, 0, 0x80, 0x5e, 0x5a, 0x62, 5, 0, 0, 0, 0],
        b"MSWINDOWS.fileattr=32\nmtime=1650000000.5\nMSWINDOWS.sd=O:BAG:SYD:(A;;FA;;;SY)\nMSWINDOWS.xattr.k=AQI=\nLIBARCHIVE.creationtime=-3",
    );
    write_seed(
        bt,
        "pax-symlink",
        &[6, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        b"MSWINDOWS.mountpoint=1\nlinkname=C:/x/y",
    );
    write_seed(bt, "tar-base", &[7], &base_layer());
    write_seed(bt, "tar-child", &[7], &child_layer());

    let im = Path::new("corpus/import");
    write_seed(im, "base", &[0], &base_layer());
    write_seed(im, "child", &[1], &child_layer());
    write_seed(
        im,
        "uvm-20348",
        &[0],
        &wclayer_fuzz::base_layer_with_uvm("20348"),
    );
    write_seed(
        im,
        "uvm-26100",
        &[0],
        &wclayer_fuzz::base_layer_with_uvm("26100"),
    );
    println!("seeds written to {} and {}", bt.display(), im.display());
}
