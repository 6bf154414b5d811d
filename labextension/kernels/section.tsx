import * as React from 'react';

import { IServer, IServerKernelsModel, ISidebarSection } from '../tokens';
import { ServerKernels } from './list';

/** The kernels running on each running server, in the Compute Servers panel. */
export class KernelsSection implements ISidebarSection {
  constructor(options: KernelsSection.IOptions) {
    this._kernels = options.kernels;
    this._sessionPath = options.sessionPath;
  }

  /** After the sync and the metrics, before the terminals. */
  readonly rank = 30;

  get changed(): IServerKernelsModel['changed'] {
    return this._kernels.changed;
  }

  setWatched(watched: boolean): void {
    this._kernels.watched = watched;
  }

  renderDetails(server: IServer): React.ReactNode {
    const kernels = this._kernels;
    return (
      <ServerKernels
        serverName={server.name}
        entry={kernels.entry(server.id)}
        onShutdown={kernel => kernels.shutdown(server.id, kernel.kernel_id)}
        onRetry={() => void kernels.refresh(server.id)}
        sessionPath={this._sessionPath}
      />
    );
  }

  private _kernels: IServerKernelsModel;
  private _sessionPath?: (kernelId: string) => string | null;
}

export namespace KernelsSection {
  export interface IOptions {
    kernels: IServerKernelsModel;
    /** The notebook or console a kernel of this Jupyter server belongs to, if known. */
    sessionPath?: (kernelId: string) => string | null;
  }
}
