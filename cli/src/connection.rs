//! Where the launcher is, which root to trust, and which token to send.
//!
//! Each of the URL, the token file and the CA file is taken from the first
//! place that names it: the flag, its `ATTESTABLE_*` variable (clap merges
//! those two), the config file, and finally a launcher data folder
//! (`launcher.addr`, `api-token`, `pki/root.pem`): `--data`/`ATTESTABLE_DATA`,
//! the config's `data`, else the first of the default folders that exists.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::args::ConnectionArgs;

/// The folder the `demo` subcommand keeps its launcher in, relative to the
/// current folder: the first default.
pub const DEMO_LAUNCHER_DIR: &str = "attestable-demo/launcher";

/// A launcher to talk to, fully resolved.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `https://host:port`, no trailing slash.
    pub url: String,
    pub token: String,
    pub token_file: PathBuf,
    /// PEM of the root(s) to trust.
    pub ca_pem: Vec<u8>,
    pub ca_file: PathBuf,
    /// The data folder the connection came from, if any (for hints).
    pub data_dir: Option<PathBuf>,
}

impl Connection {
    /// How to start a launcher that serves this connection.
    pub fn start_hint(&self) -> String {
        match &self.data_dir {
            Some(dir) => format!("start it with `launcher serve --data {}`", shell_path(dir)),
            None => {
                let listen = self
                    .url
                    .strip_prefix("https://")
                    .unwrap_or(&self.url)
                    .to_owned();
                format!("start it with `launcher serve --data DIR --listen {listen}`")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(
        "no launcher found: no --url, ATTESTABLE_URL or config file, and no data folder at {}; \
         start one with `launcher serve --data {}` (or pass --data DIR, or --url, --token-file and --ca)",
        looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" or "),
        looked.first().map(|p| shell_path(p)).unwrap_or_else(|| "DIR".into())
    )]
    NoLauncher { looked: Vec<PathBuf> },
    #[error(
        "the launcher of {} is not running (no {}); start it with `launcher serve --data {}`",
        dir.display(),
        dir.join("launcher.addr").display(),
        shell_path(dir)
    )]
    NotRunning { dir: PathBuf },
    #[error("the data folder {} does not exist", .0.display())]
    NoDataDir(PathBuf),
    #[error("reading {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("launcher URL {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("the API token file {} is empty", .0.display())]
    EmptyToken(PathBuf),
    #[error("the CA file {} holds no PEM certificate", .0.display())]
    NotPem(PathBuf),
}

/// The config file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    url: Option<String>,
    token_file: Option<PathBuf>,
    ca: Option<PathBuf>,
    data: Option<PathBuf>,
}

/// What the environment says about standard folders (injected for tests).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub current_dir: PathBuf,
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
}

impl Environment {
    pub fn from_process() -> Self {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        Self {
            current_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            home: var("HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_data_home: var("XDG_DATA_HOME"),
        }
    }

    fn default_config(&self) -> Option<PathBuf> {
        self.xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
            .map(|d| d.join("attestable").join("config.toml"))
    }

    /// The data folders looked at when nothing names one, in order.
    pub fn default_data_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.current_dir.join(DEMO_LAUNCHER_DIR)];
        if let Some(data) = self
            .xdg_data_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".local/share")))
        {
            dirs.push(data.join("attestable-launcher"));
        }
        dirs
    }
}

/// Resolves the connection from the arguments (flags and environment
/// variables), the config file and the data folders.
pub fn resolve(args: &ConnectionArgs, env: &Environment) -> Result<Connection, ConnectionError> {
    let (config, config_dir) = load_config(args.config.as_deref(), env)?;
    let relative = |p: PathBuf| match &config_dir {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    };
    let url = args.url.clone().or(config.url);
    let token_file = args
        .token_file
        .clone()
        .or_else(|| config.token_file.map(relative));
    let ca_file = args.ca.clone().or_else(|| config.ca.map(relative));

    let data_dir = if url.is_some() && token_file.is_some() && ca_file.is_some() {
        None
    } else {
        Some(data_dir(
            args.data.clone().or_else(|| config.data.map(relative)),
            env,
        )?)
    };
    let in_data = |name: &str| data_dir.as_ref().map(|d| d.join(name));

    let url = match url {
        Some(url) => normalize_url(&url)?,
        None => {
            let dir = data_dir
                .as_ref()
                .expect("a data folder when no URL is given");
            let addr_file = dir.join("launcher.addr");
            let addr = match fs::read_to_string(&addr_file) {
                Ok(addr) => addr,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ConnectionError::NotRunning { dir: dir.clone() });
                }
                Err(source) => {
                    return Err(ConnectionError::Read {
                        what: "the launcher address",
                        path: addr_file,
                        source,
                    });
                }
            };
            normalize_url(addr.trim())?
        }
    };
    let token_file = token_file
        .or_else(|| in_data("api-token"))
        .expect("a data folder when no token file is given");
    let token = fs::read_to_string(&token_file)
        .map_err(|source| ConnectionError::Read {
            what: "the API token file",
            path: token_file.clone(),
            source,
        })?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err(ConnectionError::EmptyToken(token_file));
    }
    let ca_file = ca_file
        .or_else(|| in_data("pki/root.pem"))
        .expect("a data folder when no CA is given");
    let ca_pem = fs::read(&ca_file).map_err(|source| ConnectionError::Read {
        what: "the CA file",
        path: ca_file.clone(),
        source,
    })?;
    if !String::from_utf8_lossy(&ca_pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ConnectionError::NotPem(ca_file));
    }
    Ok(Connection {
        url,
        token,
        token_file,
        ca_pem,
        ca_file,
        data_dir,
    })
}

fn load_config(
    explicit: Option<&Path>,
    env: &Environment,
) -> Result<(ConfigFile, Option<PathBuf>), ConnectionError> {
    let (path, required) = match explicit {
        Some(path) => (path.to_path_buf(), true),
        None => match env.default_config() {
            Some(path) => (path, false),
            None => return Ok((ConfigFile::default(), None)),
        },
    };
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((ConfigFile::default(), None));
        }
        Err(source) => {
            return Err(ConnectionError::Read {
                what: "the config file",
                path,
                source,
            });
        }
    };
    let config: ConfigFile = toml::from_str(&text).map_err(|e| ConnectionError::Config {
        path: path.clone(),
        message: format!("{}; expected keys url, token_file, ca, data", e.message()),
    })?;
    let dir = path.parent().map(Path::to_path_buf);
    Ok((config, dir))
}

fn data_dir(named: Option<PathBuf>, env: &Environment) -> Result<PathBuf, ConnectionError> {
    if let Some(dir) = named {
        return if dir.is_dir() {
            Ok(dir)
        } else {
            Err(ConnectionError::NoDataDir(dir))
        };
    }
    let candidates = env.default_data_dirs();
    candidates
        .iter()
        .find(|d| d.is_dir())
        .cloned()
        .ok_or(ConnectionError::NoLauncher { looked: candidates })
}

/// `host:port` or `https://host:port[/]` → `https://host:port`.
pub fn normalize_url(url: &str) -> Result<String, ConnectionError> {
    let bad = |message: &str| ConnectionError::Url {
        url: url.to_owned(),
        message: message.to_owned(),
    };
    let with_scheme = if url.contains("://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    let parsed = reqwest::Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(bad(&format!(
            "expected https (the launcher serves HTTPS only), found {}",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("expected a host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("expected no query or fragment"));
    }
    Ok(with_scheme.trim_end_matches('/').to_owned())
}

/// A path as a person would type it in a shell (quoted when needed).
fn shell_path(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@~".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    fn launcher_dir(root: &Path, name: &str, port: u16) -> PathBuf {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("pki")).unwrap();
        fs::write(dir.join("launcher.addr"), format!("127.0.0.1:{port}")).unwrap();
        fs::write(dir.join("api-token"), format!("token-{name}\n")).unwrap();
        fs::write(dir.join("pki/root.pem"), PEM).unwrap();
        dir
    }

    fn env_in(root: &Path) -> Environment {
        Environment {
            current_dir: root.join("cwd"),
            home: Some(root.join("home")),
            xdg_config_home: None,
            xdg_data_home: None,
        }
    }

    #[test]
    fn urls_are_https_without_a_trailing_slash() {
        assert_eq!(
            normalize_url("127.0.0.1:5000").unwrap(),
            "https://127.0.0.1:5000"
        );
        assert_eq!(
            normalize_url("https://localhost:5000/").unwrap(),
            "https://localhost:5000"
        );
        let err = normalize_url("http://127.0.0.1:5000").unwrap_err();
        assert!(err.to_string().contains("HTTPS only"), "{err}");
        assert!(normalize_url("https://h:1?x=1").is_err());
        assert!(normalize_url("https://").is_err());
    }

    #[test]
    fn nothing_found_names_where_it_looked() {
        let tmp = tempfile::tempdir().unwrap();
        let err = resolve(&ConnectionArgs::default(), &env_in(tmp.path())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("cwd/attestable-demo/launcher"), "{text}");
        assert!(
            text.contains("home/.local/share/attestable-launcher"),
            "{text}"
        );
        assert!(text.contains("launcher serve --data"), "{text}");
    }

    #[test]
    fn the_demo_folder_comes_before_xdg_data() {
        let tmp = tempfile::tempdir().unwrap();
        let env = env_in(tmp.path());
        launcher_dir(
            &tmp.path().join("home/.local/share"),
            "attestable-launcher",
            2,
        );
        let c = resolve(&ConnectionArgs::default(), &env).unwrap();
        assert_eq!(c.url, "https://127.0.0.1:2");
        assert_eq!(c.token, "token-attestable-launcher");
        launcher_dir(&tmp.path().join("cwd/attestable-demo"), "launcher", 1);
        let c = resolve(&ConnectionArgs::default(), &env).unwrap();
        assert_eq!(c.url, "https://127.0.0.1:1");
        assert_eq!(c.token, "token-launcher");
        assert_eq!(c.ca_pem, PEM.as_bytes());
    }

    #[test]
    fn flags_beat_the_config_which_beats_the_data_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let env = env_in(tmp.path());
        let a = launcher_dir(tmp.path(), "a", 1);
        let b = launcher_dir(tmp.path(), "b", 2);
        let config = tmp.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "data = {:?}\nurl = \"127.0.0.1:9\"\n",
                b.display().to_string()
            ),
        )
        .unwrap();
        let args = ConnectionArgs {
            config: Some(config.clone()),
            ..Default::default()
        };
        let c = resolve(&args, &env).unwrap();
        assert_eq!(
            (c.url.as_str(), c.token.as_str()),
            ("https://127.0.0.1:9", "token-b")
        );
        let args = ConnectionArgs {
            config: Some(config),
            data: Some(a.clone()),
            url: Some("https://localhost:7".into()),
            ..Default::default()
        };
        let c = resolve(&args, &env).unwrap();
        assert_eq!(
            (c.url.as_str(), c.token.as_str()),
            ("https://localhost:7", "token-a")
        );
        assert_eq!(c.data_dir.as_deref(), Some(a.as_path()));
    }

    #[test]
    fn config_paths_are_relative_to_the_config_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("conf");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("token"), "secret").unwrap();
        fs::write(dir.join("ca.pem"), PEM).unwrap();
        fs::write(
            dir.join("config.toml"),
            "url = \"https://127.0.0.1:3\"\ntoken_file = \"token\"\nca = \"ca.pem\"\n",
        )
        .unwrap();
        let env = Environment {
            xdg_config_home: Some(tmp.path().to_path_buf()),
            ..env_in(tmp.path())
        };
        // Found as $XDG_CONFIG_HOME/attestable/config.toml.
        fs::rename(&dir, tmp.path().join("attestable")).unwrap();
        let c = resolve(&ConnectionArgs::default(), &env).unwrap();
        assert_eq!(c.token, "secret");
        assert_eq!(c.ca_file, tmp.path().join("attestable/ca.pem"));
        assert!(c.data_dir.is_none());
    }

    #[test]
    fn config_mistakes_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let env = env_in(tmp.path());
        let config = tmp.path().join("c.toml");
        fs::write(&config, "adress = \"x\"\n").unwrap();
        let args = ConnectionArgs {
            config: Some(config.clone()),
            ..Default::default()
        };
        let err = resolve(&args, &env).unwrap_err().to_string();
        assert!(
            err.contains("adress") && err.contains("expected keys"),
            "{err}"
        );
        let args = ConnectionArgs {
            config: Some(tmp.path().join("missing.toml")),
            ..Default::default()
        };
        assert!(
            resolve(&args, &env)
                .unwrap_err()
                .to_string()
                .contains("missing.toml")
        );
    }

    #[test]
    fn a_stopped_launcher_says_how_to_start_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = launcher_dir(tmp.path(), "stopped", 1);
        fs::remove_file(dir.join("launcher.addr")).unwrap();
        let args = ConnectionArgs {
            data: Some(dir.clone()),
            ..Default::default()
        };
        let err = resolve(&args, &env_in(tmp.path())).unwrap_err().to_string();
        assert!(err.contains("is not running"), "{err}");
        assert!(
            err.contains(&format!("launcher serve --data {}", dir.display())),
            "{err}"
        );
    }

    #[test]
    fn token_and_ca_files_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = launcher_dir(tmp.path(), "d", 1);
        let args = ConnectionArgs {
            data: Some(dir.clone()),
            ..Default::default()
        };
        fs::write(dir.join("api-token"), "\n").unwrap();
        let err = resolve(&args, &env_in(tmp.path())).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        fs::write(dir.join("api-token"), "t").unwrap();
        fs::write(dir.join("pki/root.pem"), "not pem").unwrap();
        let err = resolve(&args, &env_in(tmp.path())).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }
}
