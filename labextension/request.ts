import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Where the server extension's REST API lives, relative to the base URL. */
export const API_NAMESPACE = 'compute-servers/api';

/**
 * An error from the compute servers API, with the fields of the JSON error body
 * (`message`, and `field` when one input was at fault) kept for the UI.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field: string | null = null,
    readonly body: Record<string, unknown> = {}
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** True when the server answered 404 for the whole API: the extension is not enabled. */
  get isMissingExtension(): boolean {
    return this.status === 404 && !('message' in this.body);
  }
}

/**
 * Call the compute servers REST API.
 *
 * @param endPoint path under `compute-servers/api/`, e.g. `status`
 * @param init request options; a `body` object is sent as JSON
 * @param settings server connection settings (defaults to the page's)
 * @returns the decoded JSON body, or `null` for an empty answer
 * @throws {ApiError} for any non-2xx answer, with the server's message
 * @throws {ServerConnection.NetworkError} when the server cannot be reached
 */
export async function requestAPI<T = unknown>(
  endPoint = '',
  init: Omit<RequestInit, 'body'> & { body?: unknown } = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_NAMESPACE, endPoint);
  const { body, ...rest } = init;
  const requestInit: RequestInit = { ...rest };
  if (body !== undefined) {
    requestInit.body = JSON.stringify(body);
    requestInit.headers = {
      'Content-Type': 'application/json',
      ...(rest.headers ?? {})
    };
  }

  const response = await ServerConnection.makeRequest(
    url,
    requestInit,
    settings
  );
  const text = await response.text();
  let data: any = null;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const payload =
      data && typeof data === 'object' ? (data as Record<string, any>) : {};
    const message =
      (typeof payload.message === 'string' && payload.message) ||
      response.statusText ||
      `Request failed with status ${response.status}`;
    throw new ApiError(
      response.status,
      message,
      typeof payload.field === 'string' ? payload.field : null,
      payload
    );
  }
  return data as T;
}
