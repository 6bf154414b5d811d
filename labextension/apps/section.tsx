import * as React from 'react';

import { IServer, ISidebarSection } from '../tokens';
import { ServerAppsModel } from './model';
import { IImageApp, IServerApp } from './types';

/**
 * A running server's web apps in the Compute Servers panel: an Open button per app its image
 * declares (TensorBoard) in its row; under it, the apps that run (Open, Stop), the ports its
 * processes listen on (Open), and a port to open by number.
 */
export class AppsSection implements ISidebarSection {
  constructor(private readonly _options: AppsSection.IOptions) {}

  /** Buttons after Terminal (40), before Edit; details after the terminals. */
  readonly rank = 45;

  get changed(): ServerAppsModel['changed'] {
    return this._options.model.changed;
  }

  setWatched(watched: boolean): void {
    this._options.model.watched = watched;
  }

  renderActions(server: IServer, pending: boolean): React.ReactNode {
    if (server.state !== 'running') {
      return null;
    }
    return this._options.declared(server).map(app => (
      <button
        key={app.name}
        type="button"
        className="jp-ComputeServers-action jp-ComputeServers-openApp"
        data-app={app.name}
        title={`Start ${app.label ?? app.name} on ${server.name} (if it is not running) and open it in a tab`}
        disabled={pending}
        onClick={() => this._options.onOpenApp(server, app.name)}
      >
        {app.label ?? app.name}
      </button>
    ));
  }

  renderDetails(server: IServer): React.ReactNode {
    return (
      <ServerWebApps
        server={server}
        model={this._options.model}
        onOpenApp={name => this._options.onOpenApp(server, name)}
        onOpenPort={port => this._options.onOpenPort(server, port)}
      />
    );
  }
}

export namespace AppsSection {
  export interface IOptions {
    model: ServerAppsModel;
    /** The apps a server's image declares (from the catalogue). */
    declared: (server: IServer) => ReadonlyArray<IImageApp>;
    onOpenApp: (server: IServer, name: string) => void;
    onOpenPort: (server: IServer, port: number) => void;
  }
}

function ServerWebApps(props: {
  server: IServer;
  model: ServerAppsModel;
  onOpenApp: (name: string) => void;
  onOpenPort: (port: number) => void;
}): JSX.Element {
  const { server, model } = props;
  const entry = model.entry(server.id);
  const [port, setPort] = React.useState('');
  const [errors, setErrors] = React.useState<Record<string, string>>({});
  const started = entry.value.apps.filter(a => a.state !== 'stopped');
  const appPorts = new Set(started.map(a => a.port));
  const ports = entry.value.ports.filter(p => !appPorts.has(p.port));
  const stop = (app: IServerApp) => {
    model.stop(server.id, app.name).catch(error =>
      setErrors({
        ...errors,
        [app.name]: `Could not stop ${app.label}: ${error.message ?? error}`
      })
    );
  };
  const number = Number(port);
  const valid = Number.isInteger(number) && number >= 1 && number <= 65535;
  return (
    <div
      className="jp-ComputeServers-apps"
      aria-label={`Web apps on ${server.name}`}
    >
      {entry.error && (
        <div className="jp-ComputeServers-appsError" role="alert">
          Could not read the web apps on {server.name}: {entry.error}
        </div>
      )}
      {(started.length > 0 || ports.length > 0) && (
        <ul className="jp-ComputeServers-appList">
          {started.map(app => (
            <li
              key={app.name}
              className="jp-ComputeServers-app"
              data-app={app.name}
            >
              <span className="jp-ComputeServers-appName">
                {app.label}
                {app.state === 'exited'
                  ? ` (exited, code ${app.exit_code})`
                  : ''}
              </span>
              <button
                type="button"
                className="jp-ComputeServers-appOpen"
                title={`Open ${app.label} on ${server.name} in a tab`}
                onClick={() => props.onOpenApp(app.name)}
              >
                Open
              </button>
              <button
                type="button"
                className="jp-ComputeServers-appStop jp-mod-warn"
                title={`Stop ${app.label} on ${server.name}`}
                onClick={() => stop(app)}
              >
                Stop
              </button>
              {errors[app.name] && (
                <div className="jp-ComputeServers-appsError" role="alert">
                  {errors[app.name]}
                </div>
              )}
            </li>
          ))}
          {ports.map(p => (
            <li
              key={p.port}
              className="jp-ComputeServers-port"
              data-port={p.port}
            >
              <span
                className="jp-ComputeServers-appName"
                title={`${p.command}${p.pid ? `\nProcess ${p.pid}` : ''}`}
              >
                Port {p.port}: {p.command.split(' ').slice(0, 3).join(' ')}
              </span>
              <button
                type="button"
                className="jp-ComputeServers-portOpen"
                title={`Open port ${p.port} of ${server.name} in a tab`}
                onClick={() => props.onOpenPort(p.port)}
              >
                Open
              </button>
            </li>
          ))}
        </ul>
      )}
      <form
        className="jp-ComputeServers-openPort"
        onSubmit={event => {
          event.preventDefault();
          if (valid) {
            props.onOpenPort(number);
          }
        }}
      >
        <input
          type="number"
          min={1}
          max={65535}
          placeholder="Port"
          aria-label={`A port of ${server.name} to open`}
          value={port}
          onChange={event => setPort(event.target.value)}
        />
        <button
          type="submit"
          disabled={!valid}
          title="Open a web app that listens on this port of the server's loopback"
        >
          Open port
        </button>
      </form>
    </div>
  );
}
