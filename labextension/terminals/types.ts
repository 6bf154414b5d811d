/**
 * The shapes of a compute server's terminals (`compute-servers/api/servers/{id}/terminals`)
 * and of its SSH access snippet (`.../ssh-access`).
 */

/** One terminal (a shell on a PTY held on the server), as the API lists it. */
export interface IRemoteTerminal {
  /** Its name, unique on the server: 1-64 letters, digits, '-' or '_'. */
  name: string;
  /** The PTY host's process id on the server. */
  pid?: number;
  /** Where the shell started, on the server. */
  cwd?: string;
  /** When it started, in seconds since the epoch. */
  started?: number;
}

/** The body of `POST servers/{id}/terminals`; every field is optional. */
export interface ITerminalCreate {
  name?: string;
  /** A directory below the server's workspace. */
  cwd?: string;
  rows?: number;
  cols?: number;
}

/** `GET servers/{id}/ssh-access`: how to reach a running server with one's own tools. */
export interface ISSHAccess {
  /** The `Host` of the snippet, e.g. `compute-gpu-box`. */
  host_alias: string;
  /** Lines for `~/.ssh/config`. */
  config: string;
  /** The server's pinned host key, as a known_hosts line. */
  known_hosts: string;
  /** Where that line is written on the Jupyter machine (the snippet points at it). */
  known_hosts_file: string;
  /** The private key's path on the Jupyter machine. */
  identity_file: string;
  /** The server's workspace directory. */
  workspace?: string;
  /** Commands to try, e.g. `ssh compute-gpu-box`. */
  examples?: string[];
}
