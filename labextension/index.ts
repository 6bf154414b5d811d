import { JupyterFrontEndPlugin } from '@jupyterlab/application';

import { appsPlugin } from './plugins/apps';
import { commandsPlugin } from './plugins/commands';
import { costsPlugin, notificationsPlugin } from './plugins/costs';
import { eventsPlugin } from './plugins/events';
import { hostsPlugin, metricsPlugin } from './plugins/hosts';
import {
  kernelIndicatorPlugin,
  kernelPickerPlugin,
  kernelSpecsPlugin,
  kernelsPlugin,
  launcherPlugin
} from './plugins/kernels';
import { mountPlugin } from './plugins/mount';
import { serversPlugin } from './plugins/servers';
import { sidebarPlugin } from './plugins/sidebar';
import { statusPlugin } from './plugins/status';
import { syncPlugin } from './plugins/sync';
import { teamPlugin } from './plugins/team';
import { terminalsPlugin } from './plugins/terminals';

const plugins: JupyterFrontEndPlugin<any>[] = [
  statusPlugin,
  eventsPlugin,
  serversPlugin,
  commandsPlugin,
  terminalsPlugin,
  appsPlugin,
  metricsPlugin,
  hostsPlugin,
  syncPlugin,
  mountPlugin,
  costsPlugin,
  teamPlugin,
  notificationsPlugin,
  sidebarPlugin,
  kernelSpecsPlugin,
  kernelsPlugin,
  launcherPlugin,
  kernelPickerPlugin,
  kernelIndicatorPlugin
];

export default plugins;
export * from './tokens';
