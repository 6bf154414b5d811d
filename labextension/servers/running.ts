import { Notification } from '@jupyterlab/apputils';

import { IComputeServersModel } from '../tokens';
import { describeError } from './actions';
import { isTransitional } from './format';
import { IServer } from './types';

/** Why a server cannot be started (or waited for) now, or null when it can. */
export function cannotStart(server: IServer): string | null {
  if (server.state === 'running' || server.state === 'starting') {
    return null;
  }
  if (isTransitional(server.state)) {
    return `${server.name} is ${server.state}; wait until it is done, then start it.`;
  }
  if (
    server.allowed_actions.includes('start') ||
    server.allowed_actions.includes('resume')
  ) {
    return null;
  }
  if (server.state === 'error') {
    return (
      `${server.name} is in error` +
      (server.state_reason ? ` (${server.state_reason})` : '') +
      '; deprovision it, then start it again.'
    );
  }
  return `${server.name} is ${server.state} and cannot be started now.`;
}

/**
 * Wait until the model shows a server running, once it is starting; reject when it settles in
 * another state (the start failed, or someone stopped it). `onProgress` hears each new
 * progress message (such as its place in a host's GPU queue).
 */
export function waitUntilRunning(
  model: IComputeServersModel,
  serverId: number,
  onProgress?: (message: string) => void
): Promise<IServer> {
  return new Promise<IServer>((resolve, reject) => {
    let lastMessage = '';
    const check = () => {
      const server = model.server(serverId);
      if (!server) {
        model.changed.disconnect(check);
        reject(new Error('The compute server was deleted.'));
        return;
      }
      if (server.state === 'running' && !server.operation) {
        model.changed.disconnect(check);
        resolve(server);
        return;
      }
      const message = server.progress?.message ?? '';
      if (message && message !== lastMessage) {
        lastMessage = message;
        onProgress?.(message);
      }
      if (!server.operation && !isTransitional(server.state)) {
        model.changed.disconnect(check);
        reject(
          new Error(
            `${server.name} is ${
              server.state === 'error' ? 'in error' : server.state
            }` + (server.state_reason ? `: ${server.state_reason}` : '.')
          )
        );
      }
    };
    model.changed.connect(check);
    check();
  });
}

/**
 * Start a server (or resume it) unless it runs, and wait until it runs, saying so in a
 * notification that follows its progress ("Waiting on lab: 2nd in line …").
 *
 * @returns the running server
 * @throws when it cannot be started or does not come up (the notification says why)
 */
export async function ensureRunning(
  model: IComputeServersModel,
  server: IServer,
  purpose: string
): Promise<IServer> {
  if (server.state === 'running' && !server.operation) {
    return server;
  }
  const refused = cannotStart(server);
  if (refused) {
    throw new Error(refused);
  }
  const id = Notification.emit(
    `Starting ${server.name} ${purpose}…`,
    'in-progress',
    { autoClose: false }
  );
  try {
    // A server already starting (or running, a reboot under way) is only waited for.
    if (server.state !== 'starting' && server.state !== 'running') {
      const action = server.allowed_actions.includes('resume')
        ? 'resume'
        : 'start';
      await model.act(server.id, action);
    }
    const running = await waitUntilRunning(model, server.id, message => {
      Notification.update({
        id,
        message: `Starting ${server.name} ${purpose}: ${message}`
      });
    });
    Notification.update({
      id,
      type: 'success',
      message: `${server.name} is running.`,
      autoClose: 3000
    });
    return running;
  } catch (error) {
    Notification.update({
      id,
      type: 'error',
      message: `Could not start ${server.name}: ${describeError(error)}`,
      autoClose: false
    });
    throw error;
  }
}
