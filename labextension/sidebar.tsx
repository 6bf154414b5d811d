import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import * as React from 'react';

import { computeServerIcon } from './icons';
import { IComputeServersStatus, IStatusSnapshot } from './tokens';

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
  constructor(private readonly statusModel: IComputeServersStatus) {
    super();
    this.id = 'jp-compute-servers-sidebar';
    this.addClass('jp-ComputeServers-sidebar');
    this.title.icon = computeServerIcon;
    this.title.caption = 'Compute Servers';
  }

  protected render(): JSX.Element {
    return (
      <div className="jp-ComputeServers-panel">
        <header className="jp-ComputeServers-header">
          <h2>Compute Servers</h2>
        </header>
        <UseSignal
          signal={this.statusModel.changed}
          initialArgs={this.statusModel.snapshot}
        >
          {(_, snapshot) => (
            <StatusBanner snapshot={snapshot ?? this.statusModel.snapshot} />
          )}
        </UseSignal>
      </div>
    );
  }
}
