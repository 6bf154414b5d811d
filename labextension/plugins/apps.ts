import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { DisposableSet } from '@lumino/disposable';

import { addAppCommands, AppCommandIDs } from '../apps/commands';
import { ServerAppsModel } from '../apps/model';
import { AppsSection } from '../apps/section';
import { declaredApps, IImageApp } from '../apps/types';
import { IImage } from '../create/types';
import { sectionName, SECTION_RANK } from '../kernels/launcher';
import { ServerDetailsLiveUpdates } from '../servers/details';
import {
  IComputeServersModel,
  IComputeServersSidebar,
  IServer,
  IServerEvents
} from '../tokens';
import { PALETTE_CATEGORY } from './commands';
import { followSetting } from './servers';

/**
 * Web apps on compute servers (TensorBoard and whatever listens on a server's loopback),
 * opened in a tab through the server's SSH connection: buttons in a running server's row, its
 * apps and open ports under it, a launcher card per app of each running server, and palette
 * commands.
 */
export const appsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-compute-servers:apps',
  description: 'Web apps on compute servers, opened through the proxy.',
  autoStart: true,
  requires: [IServerEvents, IComputeServersModel],
  optional: [
    ICommandPalette,
    ILauncher,
    ISettingRegistry,
    IComputeServersSidebar
  ],
  activate: (
    app: JupyterFrontEnd,
    events: IServerEvents,
    servers: IComputeServersModel,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    settingRegistry: ISettingRegistry | null,
    sidebar: IComputeServersSidebar | null
  ): void => {
    const model = new ServerAppsModel(app.serviceManager.serverSettings);
    const live = new ServerDetailsLiveUpdates({
      model,
      servers,
      events,
      kind: 'apps',
      interval: 30 * 1000,
      name: 'jupyter-compute-servers:apps'
    });
    followSetting(settingRegistry, 'refreshInterval', seconds => {
      if (typeof seconds === 'number' && seconds > 0) {
        live.interval = seconds * 1000;
      }
    });

    // The catalogue says which apps each image offers (read once; every version).
    let images: ReadonlyArray<IImage> = [];
    // An app that needs a GPU is offered only on a server with one (as the API checks).
    const declared = (server: IServer): ReadonlyArray<IImageApp> =>
      declaredApps(images, server.config.image).filter(
        a => !a.gpu || !!server.config.gpu
      );

    addAppCommands({ app, servers, model, declared });

    // One launcher card per app of each running server, beside its kernels.
    let cards = new DisposableSet();
    let shown = '';
    const syncLauncher = () => {
      if (!launcher) {
        return;
      }
      const wanted: { server: IServer; app: IImageApp }[] = [];
      for (const server of servers.servers) {
        if (server.state === 'running') {
          for (const a of declared(server)) {
            wanted.push({ server, app: a });
          }
        }
      }
      const key = wanted
        .map(w => `${w.server.id}:${w.server.name}:${w.app.name}`)
        .join(',');
      if (key === shown) {
        return;
      }
      shown = key;
      cards.dispose();
      cards = new DisposableSet();
      for (const { server, app: a } of wanted) {
        cards.add(
          launcher.add({
            command: AppCommandIDs.openApp,
            args: { serverId: server.id, name: a.name },
            category: sectionName(server),
            rank: SECTION_RANK + 10
          })
        );
      }
    };
    servers.changed.connect(syncLauncher);
    void servers
      .images(true)
      .then(catalog => {
        images = catalog.images;
        syncLauncher();
      })
      .catch(reason => {
        console.warn(
          'Compute servers: no image catalogue for web apps.',
          reason
        );
      });

    if (palette) {
      palette.addItem({
        command: AppCommandIDs.chooseApp,
        category: PALETTE_CATEGORY
      });
      palette.addItem({
        command: AppCommandIDs.openPort,
        category: PALETTE_CATEGORY
      });
    }

    const { commands } = app;
    sidebar?.addSection(
      new AppsSection({
        model,
        declared,
        onOpenApp: (server, name) =>
          void commands.execute(AppCommandIDs.openApp, {
            serverId: server.id,
            name
          }),
        onOpenPort: (server, port) =>
          void commands.execute(AppCommandIDs.openPort, {
            serverId: server.id,
            port
          })
      })
    );
  }
};
