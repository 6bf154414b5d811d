import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import { computeServerIcon } from './icons';
import { ServerList } from './servers/list';
import {
  AllowedAction,
  IComputeServersModel,
  IComputeServersSidebar,
  IComputeServersStatus,
  IServer,
  ISidebarSection,
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

/**
 * The "Compute Servers" panel in the left sidebar: the status banner, the New button and the
 * servers with their lifecycle buttons. The rest comes in sections that plugins add
 * (`addSection`): a server's other buttons, what shows under a running server (its sync,
 * metrics, kernels and terminals), above the list (the costs) and below it (the hosts). What
 * sections read, they read only while the panel shows (`setWatched`).
 */
export class ComputeServersSidebar
  extends ReactWidget
  implements IComputeServersSidebar
{
  constructor(options: ComputeServersSidebar.IOptions) {
    super();
    this._options = options;
    this._status = options.status;
    this._model = options.model ?? null;
    this.id = 'jp-compute-servers-sidebar';
    this.addClass('jp-ComputeServers-sidebar');
    this.title.icon = computeServerIcon;
    this.title.caption = 'Compute Servers';
    this._model?.changed.connect(this._changed, this);
  }

  addSection(section: ISidebarSection): IDisposable {
    this._sections = [...this._sections, section].sort(
      (a, b) => a.rank - b.rank
    );
    section.changed?.connect(this._changed, this);
    if (this._watched) {
      section.setWatched?.(true);
    }
    this.update();
    return new DisposableDelegate(() => {
      this._sections = this._sections.filter(s => s !== section);
      section.changed?.disconnect(this._changed, this);
      section.setWatched?.(false);
      this.update();
    });
  }

  private _setWatched(watched: boolean): void {
    this._watched = watched;
    for (const section of this._sections) {
      section.setWatched?.(watched);
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

  /** The sections' buttons in a server's row. */
  private _renderActions = (server: IServer): React.ReactNode => {
    const pending = this._pending.has(server.id);
    return this._renderEach(section =>
      section.renderActions?.(server, pending)
    );
  };

  /** What the sections show under a running server. */
  private _renderDetails = (server: IServer): React.ReactNode => {
    if (server.state !== 'running') {
      return null;
    }
    return this._renderEach(section => section.renderDetails?.(server));
  };

  /** What each section renders, by rank; null when none renders anything. */
  private _renderEach(
    render: (section: ISidebarSection) => React.ReactNode
  ): React.ReactNode {
    const nodes = this._sections
      .map((section, index) => [index, render(section)] as const)
      .filter(
        ([, node]) => node !== null && node !== undefined && node !== false
      );
    if (nodes.length === 0) {
      return null;
    }
    return (
      <>
        {nodes.map(([index, node]) => (
          <React.Fragment key={index}>{node}</React.Fragment>
        ))}
      </>
    );
  }

  /** The sections read only while the panel shows. */
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

  protected render(): JSX.Element {
    const model = this._model;
    const onCreate = this._options.onCreate;
    const showDetails = this._sections.some(s => !!s.renderDetails);
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
            {this._renderEach(section => section.renderHeader?.(model))}
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
            {this._renderEach(section => section.renderFooter?.(model))}
          </>
        )}
      </div>
    );
  }

  private _options: ComputeServersSidebar.IOptions;
  private _status: IComputeServersStatus;
  private _model: IComputeServersModel | null;
  private _sections: ISidebarSection[] = [];
  private _watched = false;
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
  }
}
