import { JupyterFrontEndPlugin } from '@jupyterlab/application';

import { commandsPlugin } from './plugins/commands';
import { serversPlugin } from './plugins/servers';
import { sidebarPlugin } from './plugins/sidebar';
import { statusPlugin } from './plugins/status';

const plugins: JupyterFrontEndPlugin<any>[] = [
  statusPlugin,
  serversPlugin,
  commandsPlugin,
  sidebarPlugin
];

export default plugins;
export * from './tokens';
