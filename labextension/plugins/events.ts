import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

import { ServerEvents } from '../events/service';
import { IServerEvents } from '../tokens';

/** The server extension's events, parsed once for every plugin that follows the servers. */
export const eventsPlugin: JupyterFrontEndPlugin<IServerEvents> = {
  id: 'jupyter-compute-servers:events',
  description: "The compute servers extension's events, parsed.",
  autoStart: true,
  provides: IServerEvents,
  activate: (app: JupyterFrontEnd): IServerEvents =>
    new ServerEvents(app.serviceManager.events)
};
