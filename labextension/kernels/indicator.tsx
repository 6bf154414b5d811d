import { ISessionContext } from '@jupyterlab/apputils';
import { KernelSpec } from '@jupyterlab/services';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { stateLabel } from '../servers/format';
import { IComputeServersModel } from '../tokens';
import { specServer } from './specs';
import { ISpecServer } from './types';

/**
 * The kernel spec a session runs or is about to run: the one its kernel name names, or, while
 * a kernel is being started or changed, the one whose display name the session shows (as
 * JupyterLab's kernel name button does).
 */
export function sessionSpec(
  sessionContext: ISessionContext
): KernelSpec.ISpecModel | null {
  const specs = sessionContext.specsManager.specs?.kernelspecs ?? {};
  const displayName = sessionContext.kernelDisplayName;
  const kernel = sessionContext.session?.kernel;
  const current = kernel ? specs[kernel.name] : undefined;
  if (current && current.display_name === displayName) {
    return current;
  }
  for (const spec of Object.values(specs)) {
    if (spec && spec.display_name === displayName) {
      return spec;
    }
  }
  return current ?? null;
}

/** The compute server a session's kernel runs on, or null for a local kernel or none. */
export function sessionServer(
  sessionContext: ISessionContext
): ISpecServer | null {
  return sessionContext.hasNoKernel
    ? null
    : specServer(sessionSpec(sessionContext));
}

/** What the indicator shows: a dot in the server's colour, its name, and its state if not running. */
export function ServerIndicator(props: {
  server: ISpecServer;
  state?: string | null;
}): JSX.Element {
  const { server, state } = props;
  const showState = !!state && state !== 'running';
  const title =
    `The kernel ${server.kernel_display_name} runs on the compute server ${server.name}` +
    (server.cloud ? ` (${server.cloud})` : '') +
    (state ? `, which is ${state}.` : '.');
  return (
    <span
      className="jp-ComputeServers-indicatorBody"
      title={title}
      data-server-id={server.id}
      data-state={state ?? undefined}
    >
      <span
        className="jp-ComputeServers-indicatorDot"
        style={{ backgroundColor: server.color }}
        aria-hidden="true"
      />
      <span className="jp-ComputeServers-indicatorName">{server.name}</span>
      {showState && (
        <span className="jp-ComputeServers-indicatorState">
          {stateLabel(state!)}
        </span>
      )}
    </span>
  );
}

/**
 * A notebook toolbar item, next to the kernel name: which compute server runs the notebook's
 * kernel (its colour, its name, and its state while it is not running). Hidden for local
 * kernels; follows kernel changes, spec changes (a renamed server) and the server's state.
 */
export class ComputeServerIndicator extends ReactWidget {
  constructor(options: ComputeServerIndicator.IOptions) {
    super();
    this._sessionContext = options.sessionContext;
    this._model = options.model ?? null;
    this.addClass('jp-ComputeServers-indicator');
    const context = this._sessionContext;
    context.kernelChanged.connect(this._changed, this);
    context.sessionChanged.connect(this._changed, this);
    context.statusChanged.connect(this._changed, this);
    context.specsManager.specsChanged.connect(this._changed, this);
    this._model?.changed.connect(this._changed, this);
    this._changed();
  }

  /** The server shown, or null when the kernel is local (and the item hidden). */
  get server(): ISpecServer | null {
    return this._server;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    const context = this._sessionContext;
    context.kernelChanged.disconnect(this._changed, this);
    context.sessionChanged.disconnect(this._changed, this);
    context.statusChanged.disconnect(this._changed, this);
    context.specsManager.specsChanged.disconnect(this._changed, this);
    this._model?.changed.disconnect(this._changed, this);
    super.dispose();
  }

  protected render(): JSX.Element | null {
    const server = this._server;
    if (!server) {
      return null;
    }
    const state = this._model?.server(server.id)?.state ?? null;
    return <ServerIndicator server={server} state={state} />;
  }

  private _changed(): void {
    if (this.isDisposed) {
      return;
    }
    this._server = sessionServer(this._sessionContext);
    this.setHidden(this._server === null);
    this.update();
  }

  private _sessionContext: ISessionContext;
  private _model: IComputeServersModel | null;
  private _server: ISpecServer | null = null;
}

export namespace ComputeServerIndicator {
  export interface IOptions {
    /** The notebook's session. */
    sessionContext: ISessionContext;
    /** The compute servers, for the server's state; without, only its name shows. */
    model?: IComputeServersModel | null;
  }
}
