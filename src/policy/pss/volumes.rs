//! Volumes: hostPath (baseline) and restricted volume types (restricted), both unchanged since v1.0.
//! At the restricted level the volume-type check replaces the hostPath check (it forbids hostPath
//! too); a hostPath volume is still reported once, under its own, more severe rule
//! `pss.host-path-volumes`, so an exemption for other volume types (NFS, say) never exempts it. A
//! volume with no source is the emptyDir the API server defaults it to.

use super::super::finding::Violation;
use super::super::rules::Rule;
use super::visit::Cx;
use k8s_openapi::api::core::v1::Volume;

pub(super) const RESTRICTED_SINCE: u32 = 0;

pub(super) fn host_path(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    for (i, v) in cx
        .spec()
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if v.host_path.is_some() {
            out.push(host_path_violation(cx, i, v));
        }
    }
}

fn host_path_violation(cx: &Cx<'_>, i: usize, v: &Volume) -> Violation {
    Violation::new(
        Rule::HostPathVolumes,
        cx.spec_field(&format!("volumes[{i}].hostPath")),
        format!(
            "volume {:?} must not use hostPath; use a PVC, emptyDir or configMap instead",
            v.name
        ),
    )
}

pub(super) fn restricted(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    for (i, v) in cx
        .spec()
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if allowed_source(v) {
            continue;
        }
        // A volume that names no source at all is defaulted to an emptyDir by the API server
        // before admission runs, so it is allowed (the upstream fixtures rely on this).
        let Some(kind) = forbidden_source(v) else {
            continue;
        };
        if kind == "hostPath" {
            out.push(host_path_violation(cx, i, v));
            continue;
        }
        let field = cx.spec_field(&format!("volumes[{i}].{kind}"));
        let message = format!(
            "volume {:?} must not use volume type {kind}; use configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected or secret",
            v.name
        );
        out.push(Violation::new(Rule::VolumeTypes, field, message));
    }
}

/// Ephemeral or API-backed sources. A volume naming any of them passes, whatever else it sets.
fn allowed_source(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.csi.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some()
        || v.ephemeral.is_some()
        || v.image.is_some()
        || v.persistent_volume_claim.is_some()
        || v.projected.is_some()
        || v.secret.is_some()
}

/// The first forbidden source the volume sets, by its field name.
fn forbidden_source(v: &Volume) -> Option<&'static str> {
    let sources = [
        (v.host_path.is_some(), "hostPath"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.rbd.is_some(), "rbd"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephfs"),
        (v.flocker.is_some(), "flocker"),
        (v.fc.is_some(), "fc"),
        (v.azure_file.is_some(), "azureFile"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
    ];
    sources
        .into_iter()
        .find(|(set, _)| *set)
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Level, Version};
    use super::*;
    use serde_json::json;

    fn pod() -> k8s_openapi::api::core::v1::PodSpec {
        spec(json!({
            "securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "app", "securityContext": {"allowPrivilegeEscalation": false}}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "host", "hostPath": {"path": "/"}},
                {"name": "nfs", "nfs": {"server": "s", "path": "/"}},
                {"name": "bare"},
            ],
        }))
    }

    #[test]
    fn baseline_flags_host_path_only() {
        let v = run_on(&pod(), Level::Baseline, Version::Latest);
        assert_eq!(fields(&v), ["spec.volumes[1].hostPath"]);
        assert_eq!(v[0].rule, Rule::HostPathVolumes);
    }

    #[test]
    fn restricted_reports_host_path_once_under_its_own_rule() {
        let v = run_on(&pod(), Level::Restricted, Version::Minor(8));
        // "bare" names no source: the API server makes it an emptyDir.
        assert_eq!(
            fields(&v),
            ["spec.volumes[1].hostPath", "spec.volumes[2].nfs"]
        );
        // hostPath keeps its High baseline rule (an exemption for NFS must not cover it).
        let rules: Vec<Rule> = v.iter().map(|v| v.rule).collect();
        assert_eq!(rules, [Rule::HostPathVolumes, Rule::VolumeTypes]);
        assert!(Rule::HostPathVolumes.severity() > Rule::VolumeTypes.severity());
    }
}
