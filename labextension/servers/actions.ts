import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';

import { ApiError } from '../request';
import { IComputeServersModel } from '../tokens';
import { ACTION_LABELS } from './format';
import { AllowedAction, IServer, ServerAction } from './types';

/** Said before a deprovision when the server did not say it (it always should). */
const FALLBACK_DEPROVISION_WARNING =
  "Deprovisioning deletes the server's machine and its disk. Everything on the server's " +
  'disk that was not synced back is lost.';

/** The message for a failed request: the server's words, and what to do when it has none. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 409) {
      return `${error.message} The list has been refreshed; try again if the action is still offered.`;
    }
    return error.message;
  }
  if (error instanceof ServerConnection.NetworkError) {
    return `Cannot reach the Jupyter server (${error.message}). Check that it is running, then try again.`;
  }
  return error instanceof Error ? error.message : String(error);
}

async function confirm(
  title: string,
  body: string,
  label: string
): Promise<boolean> {
  const result = await showDialog({
    title,
    body,
    buttons: [
      Dialog.cancelButton(),
      Dialog.warnButton({ label, className: 'jp-ComputeServers-confirm' })
    ],
    defaultButton: 0
  });
  return result.button.accept;
}

/**
 * Do `action` to `server` as the user asked from the panel: confirm what cannot be undone
 * (deprovision, delete), then call the API; a failure is shown with the server's message.
 *
 * @returns whether the request was sent and accepted
 */
export async function runServerAction(
  model: IComputeServersModel,
  server: IServer,
  action: AllowedAction
): Promise<boolean> {
  const label = ACTION_LABELS[action] ?? action;
  try {
    if (action === 'delete') {
      const ok = await confirm(
        `Delete ${server.name}?`,
        `The compute server ${server.name} and its configuration and history are removed. This cannot be undone.`,
        'Delete'
      );
      if (!ok) {
        return false;
      }
      await model.remove(server.id);
      return true;
    }
    let body: Record<string, unknown> = {};
    if (action === 'deprovision') {
      if (!model.deprovisionWarning) {
        await model.refreshClouds().catch(() => undefined);
      }
      const ok = await confirm(
        `Deprovision ${server.name}?`,
        model.deprovisionWarning || FALLBACK_DEPROVISION_WARNING,
        'Deprovision'
      );
      if (!ok) {
        return false;
      }
      body = { confirm: true };
    }
    await model.act(server.id, action as ServerAction, body);
    return true;
  } catch (error) {
    void model.refresh();
    await showErrorMessage(
      `Could not ${label.toLowerCase()} ${server.name}`,
      describeError(error)
    );
    return false;
  }
}
