import * as React from 'react';

import {
  IComputeServersModel,
  IHost,
  IHostsModel,
  ISidebarSection
} from '../tokens';
import { HostsSection } from './list';

/** Whether the ssh cloud (on-prem hosts) is enabled: the Hosts section shows then. */
export function sshCloudEnabled(model: IComputeServersModel | null): boolean {
  return !!model && model.clouds.some(c => c.name === 'ssh');
}

/** The ssh cloud's hosts, below the list of servers when that cloud is enabled. */
export class HostsSidebarSection implements ISidebarSection {
  constructor(options: HostsSidebarSection.IOptions) {
    this._hosts = options.hosts;
    this._options = options;
  }

  readonly rank = 10;

  get changed(): IHostsModel['changed'] {
    return this._hosts.changed;
  }

  setWatched(watched: boolean): void {
    this._hosts.watched = watched;
  }

  renderFooter(servers: IComputeServersModel): React.ReactNode {
    if (!sshCloudEnabled(servers)) {
      return null;
    }
    const hosts = this._hosts;
    const o = this._options;
    return (
      <HostsSection
        hosts={hosts.hosts}
        loaded={hosts.loaded}
        error={hosts.error}
        onAdd={() => o.onAddHost?.()}
        onRefresh={() => void hosts.refresh()}
        onEdit={host => o.onEditHost?.(host)}
        onTrust={host => {
          if (!host.pending_host_key_fingerprint) {
            return Promise.resolve();
          }
          return hosts.trust(host.id, host.pending_host_key_fingerprint);
        }}
        onInventory={host => hosts.inventory(host.id)}
        onDelete={host =>
          o.onDeleteHost ? o.onDeleteHost(host) : hosts.remove(host.id)
        }
      />
    );
  }

  private _hosts: IHostsModel;
  private _options: HostsSidebarSection.IOptions;
}

export namespace HostsSidebarSection {
  export interface IOptions {
    hosts: IHostsModel;
    /** Called by the Hosts section's Add button. */
    onAddHost?: () => void;
    /** Called by a host's Edit button. */
    onEditHost?: (host: IHost) => void;
    /** Called by a host's Delete button (it asks first); default: delete at once. */
    onDeleteHost?: (host: IHost) => Promise<unknown>;
  }
}
