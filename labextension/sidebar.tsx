import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { ISignal } from '@lumino/signaling';
import * as React from 'react';

import { CostsTotal } from './costs/view';
import { HostsSection } from './hosts/list';
import { computeServerIcon } from './icons';
import { ServerKernels } from './kernels/list';
import { ServerMetricsView } from './metrics/bars';
import { ServerList } from './servers/list';
import { ServerSync, SyncButton } from './sync/view';
import { ServerTerminals } from './terminals/list';
import {
  AllowedAction,
  ICostsModel,
  IComputeServersModel,
  IComputeServersStatus,
  IHost,
  IHostsModel,
  IServer,
  IServerKernelsModel,
  IServerMetricsModel,
  IServerTerminalsModel,
  IStatusSnapshot,
  ISyncModel,
  SyncDirection
} from './tokens';

/** The banner at the top of the sidebar: says plainly when the backend cannot serve us. */
export function StatusBanner(props: {
  snapshot: IStatusSnapshot;
}): JSX.Element | null {
  const { snapshot } = props;
  switch (snapshot.state) {
    case 'loading':
      return (
        <div className="jp-ComputeServers-status" data-state="loading">
          Connecting to the compute servers extension…
        </div>
      );
    case 'ok':
      return (
        <div className="jp-ComputeServers-status" data-state="ok">
          Server extension {snapshot.status?.version} ·{' '}
          {snapshot.status && snapshot.status.clouds.length > 0
            ? `clouds: ${snapshot.status.clouds.join(', ')}`
            : 'no clouds enabled'}
        </div>
      );
    case 'version-mismatch':
      return (
        <div
          className="jp-ComputeServers-status jp-ComputeServers-status-error"
          data-state="version-mismatch"
          role="alert"
        >
          <strong>Version mismatch.</strong> The server extension is version{' '}
          {snapshot.status?.version} but this page runs version{' '}
          {snapshot.frontendVersion}. Reinstall jupyter-compute-servers and
          restart JupyterLab, then reload this page.
        </div>
      );
    case 'missing':
      return (
        <div
          className="jp-ComputeServers-status jp-ComputeServers-status-error"
          data-state="missing"
          role="alert"
        >
          <strong>The compute servers server extension is not running.</strong>{' '}
          Enable it with{' '}
          <code>jupyter server extension enable jupyter_compute_servers</code>{' '}
          and restart JupyterLab.
        </div>
      );
    case 'unreachable':
      return (
        <div
          className="jp-ComputeServers-status jp-ComputeServers-status-error"
          data-state="unreachable"
          role="alert"
        >
          <strong>Cannot reach the Jupyter server.</strong> {snapshot.error}
        </div>
      );
  }
}

/** Whether the ssh cloud (on-prem hosts) is enabled: the Hosts section shows then. */
export function sshCloudEnabled(model: IComputeServersModel | null): boolean {
  return !!model && model.clouds.some(c => c.name === 'ssh');
}

/**
 * The "Compute Servers" panel in the left sidebar: the servers with their lifecycle buttons,
 * and under each running one its metrics, kernels and terminals (read only while the panel
 * shows); the Hosts section when the ssh cloud is enabled.
 */
export class ComputeServersSidebar extends ReactWidget {
  constructor(options: ComputeServersSidebar.IOptions) {
    super();
    this._options = options;
    this._status = options.status;
    this._model = options.model ?? null;
    this._kernels = options.kernels ?? null;
    this._terminals = options.terminals ?? null;
    this._metrics = options.metrics ?? null;
    this._hosts = options.hosts ?? null;
    this._sync = options.sync ?? null;
    this._costs = options.costs ?? null;
    this.id = 'jp-compute-servers-sidebar';
    this.addClass('jp-ComputeServers-sidebar');
    this.title.icon = computeServerIcon;
    this.title.caption = 'Compute Servers';
    const signals: (ISignal<any, any> | undefined)[] = [
      this._model?.changed,
      this._kernels?.changed,
      this._terminals?.changed,
      this._metrics?.changed,
      this._hosts?.changed,
      this._sync?.changed,
      this._costs?.changed
    ];
    for (const signal of signals) {
      signal?.connect(this._changed, this);
    }
  }

  /** What reads only while the panel shows. */
  private get _watched(): { watched: boolean }[] {
    return [
      this._kernels,
      this._terminals,
      this._metrics,
      this._hosts,
      this._sync,
      this._costs
    ].filter((m): m is NonNullable<typeof m> => m !== null);
  }

  private _setWatched(watched: boolean): void {
    for (const model of this._watched) {
      model.watched = watched;
    }
  }

  private _changed(): void {
    this.update();
  }

  /** Run an action from a row's button; the row's buttons are disabled until it is done. */
  private _act = (server: IServer, action: AllowedAction): void => {
    const onAction = this._options.onAction;
    if (!onAction || this._pending.has(server.id)) {
      return;
    }
    this._pending.add(server.id);
    this.update();
    void onAction(server, action).finally(() => {
      this._pending.delete(server.id);
      this.update();
    });
  };

  /**
   * A running server's terminal and SSH access buttons; every server's Sync (with its menu:
   * directions and sync settings) and Edit buttons.
   */
  private _renderActions = (server: IServer): React.ReactNode => {
    const { onNewTerminal, onSSHAccess, onEdit, onSync, onSyncSettings } =
      this._options;
    const running = server.state === 'running';
    const canSync = !!this._sync && (!!onSync || !!onSyncSettings);
    if (!onEdit && !canSync && (!running || (!onNewTerminal && !onSSHAccess))) {
      return null;
    }
    const pending = this._pending.has(server.id);
    return (
      <>
        {canSync && (
          <SyncButton
            serverName={server.name}
            running={running && !!onSync}
            busy={
              pending ||
              (this._sync?.entry(server.id).value.running ?? null) !== null
            }
            onSync={direction => onSync?.(server, direction)}
            onSettings={
              onSyncSettings ? () => onSyncSettings(server) : undefined
            }
          />
        )}
        {running && onNewTerminal && (
          <button
            type="button"
            className="jp-ComputeServers-action jp-ComputeServers-newTerminal"
            data-tool="terminal"
            title={`Open a new terminal on ${server.name}`}
            disabled={pending}
            onClick={() => onNewTerminal(server)}
          >
            Terminal
          </button>
        )}
        {running && onSSHAccess && (
          <button
            type="button"
            className="jp-ComputeServers-action jp-ComputeServers-sshAccessButton"
            data-tool="ssh-access"
            title={`An ssh config snippet for ${server.name}, for ssh, scp, rsync or an editor`}
            disabled={pending}
            onClick={() => onSSHAccess(server)}
          >
            SSH access
          </button>
        )}
        {onEdit && (
          <button
            type="button"
            className="jp-ComputeServers-action jp-ComputeServers-editButton"
            data-tool="edit"
            title={`Edit ${server.name}: name, image and hardware, spend limit, idle timeout, daily stop`}
            disabled={pending}
            onClick={() => onEdit(server)}
          >
            Edit
          </button>
        )}
      </>
    );
  };

  /** A running server's metrics, kernels and terminals. */
  private _renderDetails = (server: IServer): React.ReactNode => {
    if (server.state !== 'running') {
      return null;
    }
    const kernels = this._kernels;
    const terminals = this._terminals;
    const metrics = this._metrics;
    const onOpen = this._options.onOpenTerminal;
    const sync = this._sync;
    return (
      <>
        {sync && (
          <ServerSync
            serverName={server.name}
            entry={sync.entry(server.id)}
            actionError={sync.actionError(server.id)}
            onCancel={run => {
              void sync.cancel(server.id, run.id).catch(() => undefined);
            }}
            onOpenFile={this._options.onOpenFile}
          />
        )}
        {metrics && (
          <ServerMetricsView
            serverName={server.name}
            entry={metrics.entry(server.id)}
            wantsGpu={!!server.config.gpu && server.config.gpu.count > 0}
          />
        )}
        {kernels && (
          <ServerKernels
            serverName={server.name}
            entry={kernels.entry(server.id)}
            onShutdown={kernel => kernels.shutdown(server.id, kernel.kernel_id)}
            onRetry={() => void kernels.refresh(server.id)}
            sessionPath={this._options.sessionPath ?? undefined}
          />
        )}
        {terminals && (
          <ServerTerminals
            serverName={server.name}
            entry={terminals.entry(server.id)}
            onOpen={terminal => onOpen?.(server, terminal.name)}
            onEnd={terminal => terminals.shutdown(server.id, terminal.name)}
            onRetry={() => void terminals.refresh(server.id)}
          />
        )}
      </>
    );
  };

  /** The metrics, kernels, terminals and hosts are read only while the panel shows. */
  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._setWatched(true);
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._setWatched(false);
  }

  protected onBeforeDetach(msg: Message): void {
    this._setWatched(false);
    super.onBeforeDetach(msg);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this._setWatched(true);
    }
  }

  private _renderHosts(hosts: IHostsModel): JSX.Element {
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

  protected render(): JSX.Element {
    const model = this._model;
    const onCreate = this._options.onCreate;
    const showDetails =
      this._kernels || this._terminals || this._metrics || this._sync
        ? true
        : false;
    const costs = this._costs;
    return (
      <div className="jp-ComputeServers-panel">
        <header className="jp-ComputeServers-header">
          <h2>Compute Servers</h2>
        </header>
        <UseSignal
          signal={this._status.changed}
          initialArgs={this._status.snapshot}
        >
          {(_, snapshot) => (
            <StatusBanner snapshot={snapshot ?? this._status.snapshot} />
          )}
        </UseSignal>
        {model && (
          <>
            <div className="jp-ComputeServers-toolbar">
              <button
                type="button"
                className="jp-ComputeServers-new jp-mod-styled jp-mod-accept"
                onClick={() => onCreate?.()}
                disabled={!onCreate}
              >
                + New compute server
              </button>
            </div>
            {costs && (model.servers.length > 0 || !!costs.costs?.budget) && (
              <CostsTotal costs={costs.costs} error={costs.error} />
            )}
            <ServerList
              servers={model.servers}
              loaded={model.loaded}
              error={model.error}
              cloudLabels={Object.fromEntries(
                model.clouds.map(c => [c.name, c.label])
              )}
              pending={this._pending}
              onAction={this._act}
              renderDetails={showDetails ? this._renderDetails : undefined}
              renderActions={this._renderActions}
            />
          </>
        )}
        {this._hosts &&
          sshCloudEnabled(model) &&
          this._renderHosts(this._hosts)}
      </div>
    );
  }

  private _options: ComputeServersSidebar.IOptions;
  private _status: IComputeServersStatus;
  private _model: IComputeServersModel | null;
  private _kernels: IServerKernelsModel | null;
  private _terminals: IServerTerminalsModel | null;
  private _metrics: IServerMetricsModel | null;
  private _hosts: IHostsModel | null;
  private _sync: ISyncModel | null;
  private _costs: ICostsModel | null;
  private _pending = new Set<number>();
}

export namespace ComputeServersSidebar {
  export interface IOptions {
    status: IComputeServersStatus;
    /** The servers to list; without, the panel shows only the status banner. */
    model?: IComputeServersModel | null;
    /** Called by the "New compute server" button. */
    onCreate?: () => void;
    /** Called by a row's action buttons. */
    onAction?: (server: IServer, action: AllowedAction) => Promise<unknown>;
    /** The running kernels to list under each running server; without, none are listed. */
    kernels?: IServerKernelsModel | null;
    /** The notebook or console a kernel of this Jupyter server belongs to, if known. */
    sessionPath?: (kernelId: string) => string | null;
    /** The terminals to list under each running server; without, none are listed. */
    terminals?: IServerTerminalsModel | null;
    /** The metrics to show under each running server; without, none are shown. */
    metrics?: IServerMetricsModel | null;
    /** The ssh cloud's hosts: a Hosts section when that cloud is enabled. */
    hosts?: IHostsModel | null;
    /** Called by a running server's Terminal button (without, there is none). */
    onNewTerminal?: (server: IServer) => void;
    /** Called by a listed terminal's Open button. */
    onOpenTerminal?: (server: IServer, name: string) => void;
    /** Called by a running server's SSH access button (without, there is none). */
    onSSHAccess?: (server: IServer) => void;
    /** Called by a server's Edit button (without, there is none). */
    onEdit?: (server: IServer) => void;
    /** The file syncs: a Sync button per server, progress and summary per running one. */
    sync?: ISyncModel | null;
    /** Called by a running server's Sync button and its direction menu. */
    onSync?: (server: IServer, direction: SyncDirection) => void;
    /** Called by the Sync menu's "Sync settings…". */
    onSyncSettings?: (server: IServer) => void;
    /** Open a file of the Jupyter root (a sync conflict's two versions). */
    onOpenFile?: (path: string) => void;
    /** The spend of all servers and the monthly budget, shown above the list. */
    costs?: ICostsModel | null;
    /** Called by the Hosts section's Add button. */
    onAddHost?: () => void;
    /** Called by a host's Edit button. */
    onEditHost?: (host: IHost) => void;
    /** Called by a host's Delete button (it asks first); default: delete at once. */
    onDeleteHost?: (host: IHost) => Promise<unknown>;
  }
}
