/**
 * Calls to tl_lab's server extension (routes under `<base_url>/tl-lab/`, see tl_lab/jupyter_server/handlers.py).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** How a learner's copy relates to the packaged lesson (tl_lab/jupyter_server/lessons.py: State). */
export type LessonState = 'missing' | 'same' | 'edited' | 'update' | 'differs';

export interface ILesson {
  name: string;
  number: number | null;
  title: string;
  goal: string;
  /** API path of the learner's copy, or null when it is not in the workspace. */
  path: string | null;
  state: LessonState;
  /** The saved copy was run to the end (last code cell ran, no error output). */
  completed: boolean;
  /** API path of the separate copy of a newer packaged version, once made. */
  update_path: string | null;
  /** Checked questions passed (tl_lab.exercises, the learner's local progress), or null without questions. */
  checks: { checked: number; total: number } | null;
}

export interface ICatalog {
  /** API path of the folder holding the lessons, or null when none is in the workspace yet. */
  folder: string | null;
  first: string | null;
  version: string;
  lessons: ILesson[];
}

export interface ICopyResult {
  folder: string;
  copied: string[];
  updates: string[];
  kept: string[];
}

export interface IOpenResult extends ICopyResult {
  path: string;
}

export interface ICheck {
  section: string;
  name: string;
  ok: boolean;
  critical: boolean;
  detail: string;
  fix: string | null;
}

export interface IDoctorReport {
  ok: boolean;
  problems: number;
  warnings: number;
  checks: ICheck[];
  text: string;
  python: string;
}

/** Request `tl-lab/<endPoint>`; a 4xx/5xx answer becomes an Error carrying the server's message. */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'tl-lab', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text for the message below
    }
  }
  if (!response.ok) {
    const message =
      (data && typeof data === 'object' && data.message) ||
      (response.status === 404 && !text
        ? 'the tl_lab server extension is not enabled: run `jupyter server extension enable tl_lab` and restart JupyterLab'
        : `${response.status} ${response.statusText}`);
    throw new ServerConnection.ResponseError(response, message);
  }
  return data as T;
}

export function listLessons(path = ''): Promise<ICatalog> {
  return requestAPI<ICatalog>(`lessons?path=${encodeURIComponent(path)}`);
}

export function openLesson(name: string | null, path = ''): Promise<IOpenResult> {
  return requestAPI<IOpenResult>('lessons/open', {
    method: 'POST',
    body: JSON.stringify({ name, path })
  });
}

export function copyLessons(
  path: string,
  options: { lessons?: string[]; updates?: boolean } = {}
): Promise<ICopyResult> {
  return requestAPI<ICopyResult>('lessons/copy', {
    method: 'POST',
    body: JSON.stringify({ path, ...options })
  });
}

export function runDoctor(): Promise<IDoctorReport> {
  return requestAPI<IDoctorReport>('doctor');
}
