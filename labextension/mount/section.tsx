import * as React from 'react';

import { IServer, ISidebarSection } from '../tokens';

/** A server's live workspace mount, as the API answers it (null when none). */
export type IMount = NonNullable<IServer['mount']>;

/** One line about a mount: where and how it is. */
export function describeMount(mount: IMount): string {
  const what = mount.path
    ? `${mount.path}/ of the Jupyter root`
    : 'The Jupyter root';
  const how = mount.read_only ? ' (read-only)' : '';
  switch (mount.state) {
    case 'mounted':
      return `${what} is mounted at ${mount.remote_path}${how}.`;
    case 'mounting':
      return `Mounting ${what.toLowerCase()} at ${mount.remote_path || mount.mount_point}…`;
    case 'remounting':
      return (
        `The connection dropped: mounting again at ${mount.remote_path}. ` +
        'Meanwhile its files fail with an error on the server.' +
        (mount.reason ? ` (${mount.reason})` : '')
      );
    case 'failed':
      return `The mount at ${mount.remote_path} failed: ${mount.reason}`;
  }
}

/**
 * A running server's Mount/Unmount button and, under it, the mount's state: the Jupyter root
 * (or a directory of it) mounted live on the server over its SSH connection.
 */
export class MountSection implements ISidebarSection {
  constructor(private readonly _options: MountSection.IOptions) {}

  /** After sync's button and before metrics under a server. */
  readonly rank = 15;

  renderActions(server: IServer, pending: boolean): React.ReactNode {
    if (server.state !== 'running') {
      return null;
    }
    const mounted = !!server.mount;
    const busy = pending || this._options.busy(server.id);
    return (
      <button
        type="button"
        className="jp-ComputeServers-action jp-ComputeServers-mountButton"
        data-tool="mount"
        disabled={busy}
        title={
          mounted
            ? `Unmount the Jupyter root from ${server.name}`
            : `Mount the Jupyter root on ${server.name}: its code reads and writes the files ` +
              'here directly (no copy, no offline work; every file access is a round trip)'
        }
        onClick={() =>
          mounted
            ? this._options.onUnmount(server)
            : this._options.onMount(server)
        }
      >
        {mounted ? 'Unmount' : 'Mount'}
      </button>
    );
  }

  renderDetails(server: IServer): React.ReactNode {
    const mount = server.mount;
    if (!mount) {
      return null;
    }
    return (
      <div
        className="jp-ComputeServers-mount"
        data-mount-state={mount.state}
        role={mount.state === 'failed' ? 'alert' : undefined}
      >
        {describeMount(mount)}
      </div>
    );
  }
}

export namespace MountSection {
  export interface IOptions {
    /** Called by a running server's Mount button. */
    onMount: (server: IServer) => void;
    /** Called by a mounted server's Unmount button. */
    onUnmount: (server: IServer) => void;
    /** Whether a mount or unmount of the server is under way here. */
    busy: (serverId: number) => boolean;
  }
}
