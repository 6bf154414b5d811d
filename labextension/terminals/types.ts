/**
 * The shapes of a compute server's terminals (`compute-servers/api/servers/{id}/terminals`)
 * and of its SSH access snippet (`.../ssh-access`), from the types generated from openapi.json.
 */
import { components, operations } from '../api/schema';

/** One terminal (a shell on a PTY held on the server), as the API lists it. */
export type IRemoteTerminal = components['schemas']['RemoteTerminal'];

/** The body of `POST servers/{id}/terminals`; every field is optional. */
export type ITerminalCreate = NonNullable<
  operations['createServerTerminal']['requestBody']
>['content']['application/json'];

/** `GET servers/{id}/ssh-access`: how to reach a running server with one's own tools. */
export type ISSHAccess = components['schemas']['SSHAccess'];
