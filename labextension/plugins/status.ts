import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

import { StatusModel } from '../status';
import { IComputeServersStatus } from '../tokens';

/** Owns the connection to the server extension: everything else asks it for the status. */
export const statusPlugin: JupyterFrontEndPlugin<IComputeServersStatus> = {
  id: 'jupyter-compute-servers:status',
  description: 'Tracks the compute servers server extension.',
  autoStart: true,
  provides: IComputeServersStatus,
  activate: (app: JupyterFrontEnd): IComputeServersStatus => {
    const model = new StatusModel(app.serviceManager.serverSettings);
    void model.refresh();
    return model;
  }
};
