import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import { computeServerIcon } from './icons';
import { ServerKernels } from './kernels/list';
import { ServerList } from './servers/list';
import {
  AllowedAction,
  IComputeServersModel,
  IComputeServersStatus,
  IServer,
  IServerKernelsModel,
  IStatusSnapshot
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

/** The "Compute Servers" panel in the left sidebar. */
export class ComputeServersSidebar extends ReactWidget {
  constructor(options: ComputeServersSidebar.IOptions) {
    super();
    this._status = options.status;
    this._model = options.model ?? null;
    this._onCreate = options.onCreate ?? null;
    this._onAction = options.onAction ?? null;
    this._kernels = options.kernels ?? null;
    this._sessionPath = options.sessionPath ?? null;
    this.id = 'jp-compute-servers-sidebar';
    this.addClass('jp-ComputeServers-sidebar');
    this.title.icon = computeServerIcon;
    this.title.caption = 'Compute Servers';
  }

  /** Run an action from a row's button; the row's buttons are disabled until it is done. */
  private _act = (server: IServer, action: AllowedAction): void => {
    if (!this._onAction || this._pending.has(server.id)) {
      return;
    }
    this._pending.add(server.id);
    this.update();
    void this._onAction(server, action).finally(() => {
      this._pending.delete(server.id);
      this.update();
    });
  };

  /** The running kernels of a running server. */
  private _renderKernels = (server: IServer): React.ReactNode => {
    const kernels = this._kernels;
    if (!kernels || server.state !== 'running') {
      return null;
    }
    return (
      <ServerKernels
        serverName={server.name}
        entry={kernels.kernels(server.id)}
        onShutdown={kernel => kernels.shutdown(server.id, kernel.kernel_id)}
        onRetry={() => void kernels.refresh(server.id)}
        sessionPath={this._sessionPath ?? undefined}
      />
    );
  };

  /** The kernels are read only while the panel shows. */
  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (this._kernels) {
      this._kernels.watched = true;
    }
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    if (this._kernels) {
      this._kernels.watched = false;
    }
  }

  protected onBeforeDetach(msg: Message): void {
    if (this._kernels) {
      this._kernels.watched = false;
    }
    super.onBeforeDetach(msg);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this._kernels && this.isVisible) {
      this._kernels.watched = true;
    }
  }

  private _renderList(
    model: IComputeServersModel,
    kernels: IServerKernelsModel | null
  ): JSX.Element {
    return (
      <ServerList
        servers={model.servers}
        loaded={model.loaded}
        error={model.error}
        cloudLabels={Object.fromEntries(
          model.clouds.map(c => [c.name, c.label])
        )}
        pending={this._pending}
        onAction={this._act}
        renderDetails={kernels ? this._renderKernels : undefined}
      />
    );
  }

  protected render(): JSX.Element {
    const model = this._model;
    const kernels = this._kernels;
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
                onClick={() => this._onCreate?.()}
                disabled={!this._onCreate}
              >
                + New compute server
              </button>
            </div>
            <UseSignal signal={model.changed}>
              {() =>
                kernels ? (
                  <UseSignal signal={kernels.changed}>
                    {() => this._renderList(model, kernels)}
                  </UseSignal>
                ) : (
                  this._renderList(model, null)
                )
              }
            </UseSignal>
          </>
        )}
      </div>
    );
  }

  private _status: IComputeServersStatus;
  private _model: IComputeServersModel | null;
  private _onCreate: (() => void) | null;
  private _onAction:
    ((server: IServer, action: AllowedAction) => Promise<unknown>) | null;
  private _kernels: IServerKernelsModel | null;
  private _sessionPath: ((kernelId: string) => string | null) | null;
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
  }
}
