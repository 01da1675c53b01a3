//! Roles as users write them, role sets, and role maps for trusted clusters.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::Error;
use crate::addr::ObservedAddr;
use crate::pin::{
    CertPin, Decision, Denial, DenyReason, PinPrefix, PinRequirement, check_pin_with,
};
use crate::yaml::{Clipped, RawValue};
#[cfg(feature = "yaml")]
use crate::yaml::{Node, Reader, load};

/// The role resource versions this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RoleVersion {
    /// `version: v5`
    V5,
    /// `version: v6`
    V6,
    /// `version: v7`
    V7,
}

impl RoleVersion {
    /// `v5`, `v6` or `v7`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RoleVersion::V5 => "v5",
            RoleVersion::V6 => "v6",
            RoleVersion::V7 => "v7",
        }
    }
}

impl fmt::Display for RoleVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role. Only `metadata.name`, `version`, `spec.options.pin_source_ip`,
/// `spec.options.pin_source_ip_prefix`, `spec.options.admin`, `spec.allow.logins` and `spec.deny.logins` are interpreted; the whole document is kept in
/// [`Role::document`] so that the other `allow` and `deny` rules and every other option survive
/// untouched.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Role {
    /// `metadata.name`.
    pub name: String,
    /// `version`.
    pub version: RoleVersion,
    /// `spec.options.pin_source_ip` (false when absent).
    pub pin_source_ip: bool,
    /// `spec.options.pin_source_ip_prefix: {ipv4: N, ipv6: M}`: how wide the pin of a
    /// certificate issued to this role's holders is (`None`: one address, /32 and /128). Only
    /// allowed with `pin_source_ip: true`; a key left out keeps that family's default.
    pub pin_prefix: Option<PinPrefix>,
    /// `spec.options.admin` (false when absent): a holder of this role may change the
    /// fleet's roles, users and network restrictions through an admin API.
    pub admin: bool,
    /// The whole document as written (after alias expansion).
    pub document: RawValue,
    /// `spec.allow.logins`: checked with [`check_login`], without repeats.
    allow_logins: BTreeSet<String>,
    /// `spec.deny.logins`: checked with [`check_login`], without repeats.
    deny_logins: BTreeSet<String>,
}

/// The longest OS login name accepted, in bytes.
pub const MAX_LOGIN_LEN: usize = 32;

/// Checks an OS login name as a role lists it in `spec.allow.logins` or `spec.deny.logins`.
///
/// A login is 1 to [`MAX_LOGIN_LEN`] bytes: a letter or `_` first, then letters, digits, `_`,
/// `.` or `-` (the portable POSIX user name, without the trailing `$` of machine accounts).
/// Templates (`{{internal.logins}}`, `{{external.x}}`) and wildcards (`*`) are not supported:
/// a role names its logins, so that what a certificate may log in as is what the role says.
///
/// # Errors
/// [`Error::InvalidLogin`], whose message says what is wrong.
///
/// ```
/// use ippin_policy::check_login;
/// assert!(check_login("deploy").is_ok() && check_login("_svc.web-1").is_ok());
/// assert!(check_login("{{internal.logins}}").unwrap_err().to_string().contains("templates"));
/// assert!(check_login("1abc").is_err() && check_login("a$").is_err());
/// ```
pub fn check_login(login: &str) -> Result<(), Error> {
    let bad = |message: String| Error::InvalidLogin {
        login: format!("{:?}", Clipped(login)),
        message,
    };
    if login.contains("{{") || login.contains("}}") {
        return Err(bad(
            "templates such as `{{internal.logins}}` are not supported; list the logins by name"
                .to_owned(),
        ));
    }
    if login.contains('*') {
        return Err(bad(
            "wildcards are not supported; list the logins by name".to_owned()
        ));
    }
    let b = login.as_bytes();
    let first_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
    let rest_ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok || b.len() > MAX_LOGIN_LEN {
        return Err(bad(format!(
            "use 1 to {MAX_LOGIN_LEN} bytes: a letter or `_` first, then letters, digits, `_`, `.` or `-`"
        )));
    }
    Ok(())
}

/// The logins a user holding `roles` may use: every role's `spec.allow.logins`, minus every
/// role's `spec.deny.logins` (a deny in any role wins over an allow in any other).
///
/// ```
/// use ippin_policy::{Role, RoleVersion, allowed_logins};
/// let dev = Role::new("dev", RoleVersion::V7, false).with_logins(["deploy", "root"], [] as [&str; 0]).unwrap();
/// let safe = Role::new("safe", RoleVersion::V7, false).with_logins([] as [&str; 0], ["root"]).unwrap();
/// assert_eq!(allowed_logins(&[&dev, &safe]).into_iter().collect::<Vec<_>>(), ["deploy"]);
/// ```
pub fn allowed_logins(roles: &[&Role]) -> BTreeSet<String> {
    let denied: BTreeSet<&String> = roles.iter().flat_map(|r| &r.deny_logins).collect();
    roles
        .iter()
        .flat_map(|r| &r.allow_logins)
        .filter(|l| !denied.contains(l))
        .cloned()
        .collect()
}

impl Role {
    /// A role built in code: `document` is [`RawValue::Null`], so it has no `allow`, `deny` or
    /// other options beyond `pin_source_ip`.
    ///
    /// ```
    /// use ippin_policy::{Role, RoleSet, RoleVersion};
    /// let set = RoleSet::new(vec![Role::new("dev", RoleVersion::V7, true)]).unwrap();
    /// assert!(set.select(&["dev"]).unwrap().requires_pin());
    /// ```
    pub fn new(name: impl Into<String>, version: RoleVersion, pin_source_ip: bool) -> Self {
        Role {
            name: name.into(),
            version,
            pin_source_ip,
            pin_prefix: None,
            admin: false,
            document: RawValue::Null,
            allow_logins: BTreeSet::new(),
            deny_logins: BTreeSet::new(),
        }
    }

    /// This role with `spec.options.pin_source_ip_prefix` = `prefix` (it only counts when
    /// `pin_source_ip` is true).
    pub fn with_pin_prefix(mut self, prefix: PinPrefix) -> Self {
        self.pin_prefix = Some(prefix);
        self
    }

    /// What this role alone requires of a certificate's pin.
    pub fn pin_requirement(&self) -> PinRequirement {
        if self.pin_source_ip {
            PinRequirement::Required(self.pin_prefix.unwrap_or(PinPrefix::EXACT))
        } else {
            PinRequirement::NotRequired
        }
    }

    /// This role with `spec.allow.logins` = `allow` and `spec.deny.logins` = `deny` (repeats
    /// count once).
    ///
    /// # Errors
    /// [`Error::InvalidLogin`] when a name fails [`check_login`].
    pub fn with_logins(
        mut self,
        allow: impl IntoIterator<Item = impl Into<String>>,
        deny: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, Error> {
        let checked = |names: &mut dyn Iterator<Item = String>| {
            names
                .map(|n| check_login(&n).map(|()| n))
                .collect::<Result<BTreeSet<String>, Error>>()
        };
        self.allow_logins = checked(&mut allow.into_iter().map(Into::into))?;
        self.deny_logins = checked(&mut deny.into_iter().map(Into::into))?;
        Ok(self)
    }

    /// `spec.allow.logins`, without repeats.
    pub fn allow_logins(&self) -> &BTreeSet<String> {
        &self.allow_logins
    }

    /// `spec.deny.logins`, without repeats.
    pub fn deny_logins(&self) -> &BTreeSet<String> {
        &self.deny_logins
    }

    /// `spec.allow`, as written.
    pub fn allow(&self) -> Option<&RawValue> {
        self.document.get("spec").and_then(|s| s.get("allow"))
    }

    /// `spec.deny`, as written.
    pub fn deny(&self) -> Option<&RawValue> {
        self.document.get("spec").and_then(|s| s.get("deny"))
    }

    /// `spec.options.<name>`, as written.
    pub fn option(&self, name: &str) -> Option<&RawValue> {
        self.document
            .get("spec")
            .and_then(|s| s.get("options"))
            .and_then(|o| o.get(name))
    }
}

#[cfg(feature = "yaml")]
#[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
/// Parses every role in `text` (one or more YAML documents, `---` separated).
///
/// `file_name` only labels errors: `roles.yaml:7: spec.options.pin_source_ip: expected a
/// boolean, found string "yes"`. Each document must be `kind: role` with `version` `v5`, `v6`
/// or `v7`; anything else is refused with [`Error::Unsupported`]. Input is bounded (see
/// [`crate::MAX_YAML_BYTES`] and the other limits); aliases count against a node budget.
pub fn parse_roles(file_name: &str, text: &str) -> Result<Vec<Role>, Error> {
    let r = Reader { file: file_name };
    load(file_name, text)?
        .iter()
        .map(|doc| parse_role(&r, doc))
        .collect()
}

#[cfg(feature = "yaml")]
fn parse_role(r: &Reader<'_>, doc: &Node) -> Result<Role, Error> {
    let version = match r.resource(
        doc,
        "role",
        &["v5", "v6", "v7"],
        "kind `role`, version v5, v6 or v7",
    )? {
        "v5" => RoleVersion::V5,
        "v6" => RoleVersion::V6,
        _ => RoleVersion::V7,
    };
    let metadata = doc
        .get("metadata")
        .ok_or_else(|| r.missing(doc, "metadata"))?;
    r.map(metadata, "metadata")?;
    let name = r.req_str(metadata, "name", "metadata.name")?;
    if name.is_empty() {
        return Err(Error::field(
            r.file,
            metadata.line,
            "metadata.name",
            "must not be empty",
        ));
    }
    if let crate::yaml::Value::Map(entries) = &doc.value {
        check_keys(r, entries, "(document)", TOP_KEYS)?;
        // A role document has these keys and no other (Teleport's too): one more is a
        // mistake, a misspelt `spec` the worst of them (the role would have no rules).
        if let Some((key, value)) = entries
            .iter()
            .find(|(k, _)| !TOP_KEYS.contains(&k.as_str()))
        {
            return Err(Error::field(
                r.file,
                value.line,
                field_of("(document)", key),
                "unknown key of a role (expected kind, sub_kind, version, metadata, spec)",
            ));
        }
    }
    let mut pin_source_ip = false;
    let mut pin_prefix = None;
    let mut admin = false;
    let mut allow_logins = BTreeSet::new();
    let mut deny_logins = BTreeSet::new();
    if let Some(spec) = doc.get("spec") {
        let entries = r.map(spec, "spec")?;
        check_keys(r, entries, "spec", SPEC_KEYS)?;
        for side in ["allow", "deny"] {
            if let Some(rules) = spec.get(side)
                && let crate::yaml::Value::Map(entries) = &rules.value
            {
                check_keys(r, entries, &format!("spec.{side}"), RULE_KEYS)?;
            }
        }
        if let Some(options) = spec.get("options") {
            let entries = r.map(options, "spec.options")?;
            check_keys(r, entries, "spec.options", OPTION_KEYS)?;
            if let Some(pin) = options.get("pin_source_ip") {
                pin_source_ip = r.bool(pin, "spec.options.pin_source_ip")?;
            }
            if let Some(a) = options.get("admin") {
                admin = r.bool(a, "spec.options.admin")?;
            }
            if let Some(p) = options.get("pin_source_ip_prefix") {
                if !pin_source_ip {
                    return Err(Error::field(
                        r.file,
                        p.line,
                        "spec.options.pin_source_ip_prefix",
                        "only allowed with `pin_source_ip: true` (a prefix without a pin pins nothing)",
                    ));
                }
                pin_prefix = Some(parse_pin_prefix(r, p)?);
            }
        }
        allow_logins = parse_logins(r, spec, "allow")?;
        deny_logins = parse_logins(r, spec, "deny")?;
    }
    Ok(Role {
        name: name.to_owned(),
        version,
        pin_source_ip,
        pin_prefix,
        admin,
        document: doc.to_raw(),
        allow_logins,
        deny_logins,
    })
}

#[cfg(feature = "yaml")]
/// `spec.options.pin_source_ip_prefix`: a mapping with `ipv4` (8 to 32) and/or `ipv6` (32 to
/// 128), integers in plain decimal; a key left out keeps the default (32, 128); any other key
/// is an error.
fn parse_pin_prefix(r: &Reader<'_>, node: &Node) -> Result<PinPrefix, Error> {
    const PATH: &str = "spec.options.pin_source_ip_prefix";
    let mut ipv4 = PinPrefix::EXACT.ipv4();
    let mut ipv6 = PinPrefix::EXACT.ipv6();
    for (key, value) in r.map(node, PATH)? {
        let (slot, min, max) = match key.as_str() {
            "ipv4" => (&mut ipv4, PinPrefix::MIN_IPV4, 32),
            "ipv6" => (&mut ipv6, PinPrefix::MIN_IPV6, 128),
            other => {
                return Err(Error::field(
                    r.file,
                    value.line,
                    PATH,
                    format!(
                        "unknown key {:?}; expected ipv4 and/or ipv6",
                        Clipped(other)
                    ),
                ));
            }
        };
        let path = format!("{PATH}.{key}");
        let n = r.decimal(value, &path)?;
        *slot = u8::try_from(n)
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                Error::field(
                    r.file,
                    value.line,
                    &path,
                    format!("must be a prefix length from {min} to {max}, not {n}"),
                )
            })?;
    }
    PinPrefix::new(ipv4, ipv6).map_err(|e| Error::field(r.file, node.line, PATH, e.to_string()))
}

/// The keys of a role document (Teleport's, all of them).
#[cfg(feature = "yaml")]
const TOP_KEYS: &[&str] = &["kind", "sub_kind", "version", "metadata", "spec"];
/// The keys of `spec` that ippin reads.
#[cfg(feature = "yaml")]
const SPEC_KEYS: &[&str] = &["options", "allow", "deny"];
/// The keys of `spec.options` that ippin reads.
#[cfg(feature = "yaml")]
const OPTION_KEYS: &[&str] = &["pin_source_ip", "pin_source_ip_prefix", "admin"];
/// The keys of `spec.allow` and `spec.deny` that ippin reads.
#[cfg(feature = "yaml")]
const RULE_KEYS: &[&str] = &["logins"];

#[cfg(feature = "yaml")]
/// Refuses a key of the map at `path` that is not one ippin reads there but is a slip away
/// from one (another case, `-` for `_`, at most two letters off, or one for a name of five
/// letters or fewer: `pin_source_ips`, `Pin-Source-IP`, `login`, `option`), or that ippin reads
/// at another level (`pin_source_ip` under `spec`, `logins` under `spec.options`). Other keys
/// are kept unread, as Teleport's roles carry many; but a misspelt `pin_source_ip` or
/// `deny.logins` would silently pin nothing or deny nothing.
fn check_keys(
    r: &Reader<'_>,
    entries: &[(String, Node)],
    path: &str,
    known: &[&str],
) -> Result<(), Error> {
    let elsewhere: &[(&[&str], &str)] = &[
        (SPEC_KEYS, "spec"),
        (OPTION_KEYS, "spec.options"),
        (RULE_KEYS, "spec.allow or spec.deny"),
    ];
    for (key, value) in entries {
        if known.contains(&key.as_str()) {
            continue;
        }
        let field = field_of(path, key);
        let refuse =
            |message: String| Err(Error::field(r.file, value.line, field.clone(), message));
        // Teleport's keys at these levels are ASCII snake case: a key with any other
        // character (a Cyrillic `е` in `dеny`, a zero-width space after `logins`) reads as one
        // of ippin's to a reviewer and is nothing to ippin.
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return refuse(
                "a key with a character other than ASCII letters, digits, `_` and `-` \
                 (keys here are ASCII; one that looks like a key ippin reads would be ignored)"
                    .to_owned(),
            );
        }
        if let Some(near) = known.iter().find(|k| is_slip(key, k)) {
            return refuse(format!(
                "unknown key; did you mean `{near}`? (ippin reads `{}`; a misspelt key would \
                 be ignored)",
                if path == "(document)" {
                    (*near).to_owned()
                } else {
                    format!("{path}.{near}")
                }
            ));
        }
        // ippin's own options are named `pin_…` or `ippin_…` (Teleport has no other option so
        // named): one this version does not know is a later version's field, which may
        // narrow the role, so it is refused rather than ignored (fail closed across versions:
        // during a rolling upgrade, nodes not yet upgraded refuse the role's users). After
        // the slips, so that `pin_soruce_ip` is told its near key.
        if path == "spec.options" && (key.starts_with("pin_") || key.starts_with("ippin_")) {
            return refuse(
                "an ippin option this version does not know (a later version's: this node \
                 refuses the role rather than ignore it)"
                    .to_owned(),
            );
        }
        for (keys, level) in elsewhere {
            if let Some(k) = keys.iter().find(|k| *k == key || is_slip(key, k))
                && !known.contains(k)
            {
                return refuse(format!("`{k}` belongs under `{level}`, not under `{path}`"));
            }
        }
    }
    Ok(())
}

#[cfg(feature = "yaml")]
/// The field an error names for `key` of the map at `path` (`(document)`: the top level); an
/// empty key (`? ` with nothing, or `"": x`) is written `""`, so that the field is never empty.
fn field_of(path: &str, key: &str) -> String {
    let key = if key.is_empty() { "\"\"" } else { key };
    if path == "(document)" {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(feature = "yaml")]
/// Whether `key` is a slip of `name`: equal but for case and `-`/`_`, or within two edits
/// (one for names of five letters or fewer), compared in lower case.
fn is_slip(key: &str, name: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let (a, b) = (norm(key), norm(name));
    if a == b {
        return true;
    }
    let most = if name.len() <= 5 { 1 } else { 2 };
    // Keys longer than any name by more than `most` cannot be within reach.
    if a.len() > b.len() + most || b.len() > a.len() + most {
        return false;
    }
    edit_distance(a.as_bytes(), b.as_bytes()) <= most
}

#[cfg(feature = "yaml")]
/// Levenshtein distance (both inputs are short: bounded above by the caller).
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    // Optimal string alignment: insertions, deletions, substitutions and swaps of two
    // neighbours (`sepc`, `deyn`) each cost one.
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    let at = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        if let Some(x) = d.get_mut(at(i, 0)) {
            *x = i;
        }
    }
    for j in 0..=b.len() {
        if let Some(x) = d.get_mut(at(0, j)) {
            *x = j;
        }
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let (ca, cb) = (a.get(i - 1), b.get(j - 1));
            let get = |i: usize, j: usize| d.get(at(i, j)).copied().unwrap_or(usize::MAX / 2);
            let mut best = (get(i - 1, j) + 1)
                .min(get(i, j - 1) + 1)
                .min(get(i - 1, j - 1) + usize::from(ca != cb));
            if i > 1 && j > 1 && ca == b.get(j - 2) && a.get(i - 2) == cb {
                best = best.min(get(i - 2, j - 2) + 1);
            }
            if let Some(x) = d.get_mut(at(i, j)) {
                *x = best;
            }
        }
    }
    d.get(at(a.len(), b.len())).copied().unwrap_or(usize::MAX)
}

#[cfg(feature = "yaml")]
/// `spec.<side>.logins`: absent is none; otherwise a sequence of logins that pass
/// [`check_login`]. `spec.<side>` itself, when written, is a mapping (or empty).
fn parse_logins(r: &Reader<'_>, spec: &Node, side: &str) -> Result<BTreeSet<String>, Error> {
    let mut out = BTreeSet::new();
    let Some(rules) = spec.get(side) else {
        return Ok(out);
    };
    if matches!(rules.value, crate::yaml::Value::Null) {
        return Ok(out);
    }
    let side_path = format!("spec.{side}");
    r.map(rules, &side_path)?;
    let Some(logins) = rules.get("logins") else {
        return Ok(out);
    };
    let path = format!("{side_path}.logins");
    for (i, item) in r.seq(logins, &path)?.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let login = r.str(item, &item_path)?;
        if let Err(Error::InvalidLogin { login, message }) = check_login(login) {
            return Err(Error::field(
                r.file,
                item.line,
                item_path,
                format!("login {login}: {message}"),
            ));
        }
        out.insert(login.to_owned());
    }
    Ok(out)
}

/// A set of roles with unique names.
#[derive(Debug, Clone, Default)]
pub struct RoleSet {
    roles: BTreeMap<String, Role>,
}

impl RoleSet {
    /// Builds a set; two roles with one name are an error.
    pub fn new(roles: Vec<Role>) -> Result<Self, Error> {
        let mut map = BTreeMap::new();
        for role in roles {
            if map.contains_key(&role.name) {
                return Err(Error::DuplicateRole { name: role.name });
            }
            map.insert(role.name.clone(), role);
        }
        Ok(RoleSet { roles: map })
    }

    /// The role called `name`.
    pub fn get(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Number of roles.
    pub fn len(&self) -> usize {
        self.roles.len()
    }

    /// Whether the set holds no role.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    /// The roles a user holds. Every name must be in the set ([`Error::UnknownRole`]
    /// otherwise); repeated names count once.
    pub fn select(&self, names: &[impl AsRef<str>]) -> Result<UserRoles, Error> {
        let mut picked: Vec<String> = Vec::with_capacity(names.len());
        let mut roles: Vec<&Role> = Vec::with_capacity(names.len());
        let mut pin = PinRequirement::NotRequired;
        for name in names {
            let name = name.as_ref();
            let role = self.roles.get(name).ok_or_else(|| Error::UnknownRole {
                name: name.chars().take(100).collect(),
            })?;
            if let Some(p) = role.pin_requirement().prefix() {
                pin = PinRequirement::Required(match pin.prefix() {
                    Some(before) => before.narrowest(p),
                    None => p,
                });
            }
            if !picked.iter().any(|p| p == name) {
                picked.push(name.to_owned());
                roles.push(role);
            }
        }
        Ok(UserRoles {
            names: picked,
            pin,
            logins: allowed_logins(&roles),
        })
    }
}

/// The roles one user holds, resolved against a [`RoleSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRoles {
    names: Vec<String>,
    pin: PinRequirement,
    logins: BTreeSet<String>,
}

impl UserRoles {
    /// Whether any of the roles sets `pin_source_ip: true`.
    pub fn requires_pin(&self) -> bool {
        self.pin.is_required()
    }

    /// What the roles require of a certificate's pin: nothing, or a pin no wider than the
    /// narrowest prefix among the roles that set `pin_source_ip: true` (per family, the longest
    /// length; a pinning role without `pin_source_ip_prefix` counts as /32 and /128).
    pub fn pin_requirement(&self) -> PinRequirement {
        self.pin
    }

    /// The role names, in the order first given, without repeats.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The OS logins the roles allow ([`allowed_logins`]: the allow lists minus the deny
    /// lists), in order.
    pub fn logins(&self) -> &BTreeSet<String> {
        &self.logins
    }
}

/// One line of a role map: a remote role (or `*` for any) and the local roles it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMapping {
    /// The remote role name, or `*` for every remote role.
    pub remote: String,
    /// The local role names.
    pub local: Vec<String>,
}

/// How the roles of a trusted (remote) cluster's certificates map to local roles.
///
/// Written in YAML as a list: `[{remote: dev, local: [access, auditor]}, {remote: "*", local:
/// [guest]}]`. A remote role matches the lines whose `remote` equals it, and every `*` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMap {
    mappings: Vec<RoleMapping>,
}

impl RoleMap {
    /// A role map from its lines.
    pub fn new(mappings: Vec<RoleMapping>) -> Self {
        RoleMap { mappings }
    }

    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    /// Parses a role map: one YAML document holding a list of `{remote, local}` mappings
    /// (`local` a list of names or a single name).
    pub fn parse(file_name: &str, text: &str) -> Result<Self, Error> {
        let r = Reader { file: file_name };
        let docs = load(file_name, text)?;
        if docs.len() > 1 {
            let line = docs.get(1).map_or(0, |d| d.line);
            return Err(Error::field(
                file_name,
                line,
                "(document)",
                "a role map is one document",
            ));
        }
        let mut mappings = Vec::new();
        let Some(doc) = docs.first() else {
            return Ok(RoleMap::default());
        };
        for (i, item) in r.seq(doc, "(document)")?.iter().enumerate() {
            let path = format!("[{i}]");
            r.map(item, &path)?;
            for (key, value) in r.map(item, &path)? {
                if key != "remote" && key != "local" {
                    return Err(Error::field(
                        file_name,
                        value.line,
                        format!("{path}.{key}"),
                        "unknown field (expected `remote` and `local`)",
                    ));
                }
            }
            let remote = r.req_str(item, "remote", &format!("{path}.remote"))?;
            let local_path = format!("{path}.local");
            let local_node = item
                .get("local")
                .ok_or_else(|| r.missing(item, &local_path))?;
            let local = match r.str(local_node, &local_path) {
                Ok(one) => vec![one.to_owned()],
                Err(_) => r
                    .seq(local_node, &local_path)
                    .map_err(|_| r.wrong(local_node, &local_path, "a list of role names"))?
                    .iter()
                    .enumerate()
                    .map(|(j, n)| r.str(n, &format!("{local_path}[{j}]")).map(str::to_owned))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            mappings.push(RoleMapping {
                remote: remote.to_owned(),
                local,
            });
        }
        Ok(RoleMap { mappings })
    }

    /// The mapping lines.
    pub fn mappings(&self) -> &[RoleMapping] {
        &self.mappings
    }

    /// The local role names the given remote roles map to, without repeats, in map order.
    pub fn map(&self, remote_roles: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in &self.mappings {
            let hit = m.remote == "*" || remote_roles.contains(&m.remote);
            if hit {
                for l in &m.local {
                    if !out.contains(l) {
                        out.push(l.clone());
                    }
                }
            }
        }
        out
    }
}

/// The pin check for a certificate issued by a trusted (remote) cluster.
///
/// The remote roles are mapped to local roles with `map`; the local roles decide whether a pin
/// is required, and then [`crate::check_pin`]'s table applies. In particular a certificate from
/// a cluster whose roles did not pin it is denied `pinned_ip_missing` when the mapped local
/// roles require a pin, and the message says the issuing cluster's roles must enable
/// `pin_source_ip` too. Remote roles that map to no local role, or to a local role that does
/// not exist, are denied `role_mapping_failed`.
///
/// The certificate's pin is taken as bound to no private endpoint: through an endpoint it is
/// refused (`pinned_endpoint_mismatch`). For a remote certificate whose pin is bound to one,
/// use [`check_pin_remote_at`].
pub fn check_pin_remote(
    map: &RoleMap,
    local: &RoleSet,
    remote_roles: &[String],
    pin: &CertPin,
    observed: &ObservedAddr,
) -> Decision {
    check_pin_remote_at(map, local, remote_roles, pin, None, observed)
}

/// [`check_pin_remote`] for a certificate whose pin may be bound to a private endpoint
/// (`pinned_endpoint`, as [`crate::check_pin_at`] takes it): the address must be seen through
/// that endpoint, and an unbound pin through none.
pub fn check_pin_remote_at(
    map: &RoleMap,
    local: &RoleSet,
    remote_roles: &[String],
    pin: &CertPin,
    pinned_endpoint: Option<&crate::Endpoint>,
    observed: &ObservedAddr,
) -> Decision {
    let mapped = map.map(remote_roles);
    if mapped.is_empty() {
        return Decision::Deny(Denial::new(
            DenyReason::RoleMappingFailed,
            format_args!(
                "the remote roles {} map to no local role",
                NameList(remote_roles)
            ),
        ));
    }
    let user = match local.select(&mapped) {
        Ok(u) => u,
        Err(e) => {
            return Decision::Deny(Denial::new(
                DenyReason::RoleMappingFailed,
                format_args!(
                    "the remote roles {} map to a missing local role: {e}",
                    NameList(remote_roles)
                ),
            ));
        }
    };
    let why = format!(
        "the local roles {} mapped from your cluster's roles {} require a pinned certificate; the issuing cluster's roles must enable pin_source_ip too",
        NameList(user.names()),
        NameList(remote_roles)
    );
    check_pin_with(user.pin_requirement(), pin, pinned_endpoint, observed, &why)
}

struct NameList<'a>(&'a [String]);

impl fmt::Display for NameList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, n) in self.0.iter().take(20).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{:?}", Clipped(n))?;
        }
        if self.0.len() > 20 {
            f.write_str(", ...")?;
        }
        f.write_str("]")
    }
}
