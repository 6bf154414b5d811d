import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Dialog,
  IFrame,
  InputDialog,
  MainAreaWidget,
  showErrorMessage
} from '@jupyterlab/apputils';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { IComputeServersModel, IServer } from '../tokens';
import { ServerAppsModel } from './model';
import { IImageApp } from './types';

export namespace AppCommandIDs {
  /** Start an app of a server's image if needed and open it in a tab: `{serverId, name}`. */
  export const openApp = 'compute-servers:open-app';
  /** Open a port of a server in a tab: `{serverId, port}` (asks for them without). */
  export const openPort = 'compute-servers:open-port';
  /** Asks which app on which running server, then opens it (the palette's). */
  export const chooseApp = 'compute-servers:choose-app';
}

/** What the tab's frame may do: the app is a web page of its own (scripts, forms, popups). */
const SANDBOX: IFrame.SandboxExceptions[] = [
  'allow-scripts',
  'allow-same-origin',
  'allow-forms',
  'allow-popups',
  'allow-downloads',
  'allow-modals'
];

/** A tab showing a web app of a server through the proxy. */
export function openInTab(
  app: JupyterFrontEnd,
  id: string,
  url: string,
  label: string
): MainAreaWidget<IFrame> {
  const existing = Array.from(app.shell.widgets('main')).find(w => w.id === id);
  if (existing) {
    app.shell.activateById(id);
    return existing as MainAreaWidget<IFrame>;
  }
  const frame = new IFrame({ sandbox: SANDBOX, referrerPolicy: 'same-origin' });
  frame.url = url;
  const widget = new MainAreaWidget({ content: frame });
  widget.id = id;
  widget.title.label = label;
  widget.title.caption = `${label} (${url})`;
  widget.title.closable = true;
  widget.addClass('jp-ComputeServers-appTab');
  app.shell.add(widget, 'main');
  app.shell.activateById(id);
  return widget;
}

export interface IAppCommandsOptions {
  app: JupyterFrontEnd;
  servers: IComputeServersModel;
  model: ServerAppsModel;
  declared: (server: IServer) => ReadonlyArray<IImageApp>;
}

export function addAppCommands(options: IAppCommandsOptions): void {
  const { app, servers, model, declared } = options;
  const { commands } = app;
  const serverOf = (args: ReadonlyPartialJSONObject) =>
    servers.server(Number(args['serverId']));
  const appOf = (args: ReadonlyPartialJSONObject) => {
    const server = serverOf(args);
    return server
      ? declared(server).find(a => a.name === String(args['name'] ?? ''))
      : undefined;
  };

  commands.addCommand(AppCommandIDs.openApp, {
    label: args => {
      const server = serverOf(args);
      const found = appOf(args);
      const name = found?.label ?? String(args['name'] ?? 'Web app');
      return server ? `${name} on ${server.name}` : name;
    },
    caption:
      'Start the app on the compute server if it is not running, and open it in a tab',
    execute: async args => {
      const server = serverOf(args);
      const name = String(args['name'] ?? '');
      if (!server) {
        return;
      }
      try {
        const started = await model.start(server.id, name);
        return openInTab(
          app,
          `compute-servers-app-${server.id}-${name}`,
          started.url,
          `${started.label} on ${server.name}`
        );
      } catch (error) {
        void showErrorMessage(
          `Could not start ${name} on ${server.name}`,
          `${(error as Error).message ?? error}`
        );
      }
    }
  });

  commands.addCommand(AppCommandIDs.openPort, {
    label: args =>
      args['port']
        ? `Port ${args['port']}`
        : 'Open a Port of a Compute Server…',
    caption:
      "Open a web app that listens on a port of a compute server's loopback",
    execute: async args => {
      let server = serverOf(args);
      let port = Number(args['port']);
      if (!server) {
        server = await chooseServer(servers);
        if (!server) {
          return;
        }
      }
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        const answer = await InputDialog.getNumber({
          title: `Open a port of ${server.name}`,
          label: 'Port (a web app listening on the server\u2019s loopback)'
        });
        if (!answer.button.accept || answer.value === null) {
          return;
        }
        port = answer.value;
      }
      const base = servers.server(server.id);
      const url = `${app.serviceManager.serverSettings.baseUrl}compute-servers/servers/${server.id}/proxy/${port}/`;
      return openInTab(
        app,
        `compute-servers-port-${server.id}-${port}`,
        url,
        `Port ${port} on ${base?.name ?? server.name}`
      );
    }
  });

  commands.addCommand(AppCommandIDs.chooseApp, {
    label: 'Open a Web App on a Compute Server…',
    caption:
      'TensorBoard and the other apps of the running servers\u2019 images',
    execute: async () => {
      const choices: { label: string; serverId: number; name: string }[] = [];
      for (const server of servers.servers) {
        if (server.state === 'running') {
          for (const a of declared(server)) {
            choices.push({
              label: `${a.label ?? a.name} on ${server.name}`,
              serverId: server.id,
              name: a.name
            });
          }
        }
      }
      if (choices.length === 0) {
        void showErrorMessage(
          'No web apps to open',
          'Start a compute server whose image offers web apps (TensorBoard) first.',
          [Dialog.okButton()]
        );
        return;
      }
      const answer = await InputDialog.getItem({
        title: 'Open a web app',
        items: choices.map(c => c.label)
      });
      const chosen = choices.find(c => c.label === answer.value);
      if (answer.button.accept && chosen) {
        return commands.execute(AppCommandIDs.openApp, {
          serverId: chosen.serverId,
          name: chosen.name
        });
      }
    }
  });
}

async function chooseServer(
  servers: IComputeServersModel
): Promise<IServer | undefined> {
  const running = servers.servers.filter(s => s.state === 'running');
  if (running.length === 0) {
    void showErrorMessage('No running compute server', 'Start one first.', [
      Dialog.okButton()
    ]);
    return undefined;
  }
  if (running.length === 1) {
    return running[0];
  }
  const answer = await InputDialog.getItem({
    title: 'Which compute server?',
    items: running.map(s => s.name)
  });
  return answer.button.accept
    ? running.find(s => s.name === answer.value)
    : undefined;
}
