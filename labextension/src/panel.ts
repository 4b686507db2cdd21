/**
 * The "Lessons" sidebar: the numbered lessons with their titles and goals, a check mark on those run to the end,
 * and what to do about a lesson whose packaged version changed. Clicking a lesson opens it (copying the lessons
 * into the workspace first when they are not there).
 */
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';
import { refreshIcon } from '@jupyterlab/ui-components';

import { ICatalog, ILesson, listLessons } from './api';
import { tlLabIcon } from './icons';
import { CommandIDs } from './commands';

export interface ILessonsPanelOptions {
  commands: CommandRegistry;
  /** The folder the learner is in (the file browser's), used until lessons are found. */
  cwd: () => string;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

export class LessonsPanel extends Widget {
  constructor(options: ILessonsPanelOptions) {
    super();
    this._commands = options.commands;
    this._cwd = options.cwd;
    this.id = 'tl-lab-lessons';
    this.addClass('tl-lab-LessonsPanel');
    this.title.icon = tlLabIcon;
    this.title.caption = 'Lessons (Transfer Learning Lab)';

    const header = el('div', 'tl-lab-LessonsPanel-header');
    header.appendChild(el('h2', 'tl-lab-LessonsPanel-title', 'Lessons'));
    const refresh = el('button', 'jp-Button jp-mod-minimal tl-lab-refresh');
    refresh.title = 'Refresh the list';
    refresh.setAttribute('aria-label', 'Refresh the list of lessons');
    refresh.appendChild(refreshIcon.element({ tag: 'span' }));
    refresh.onclick = () => void this.refresh();
    header.appendChild(refresh);

    this._where = el('p', 'tl-lab-LessonsPanel-where');
    this._list = el('ol', 'tl-lab-lesson-list');
    this._list.setAttribute('aria-label', 'Lessons');

    const footer = el('div', 'tl-lab-LessonsPanel-footer');
    footer.appendChild(this._commandButton(CommandIDs.newDashboard, 'New TransferLab notebook'));
    footer.appendChild(this._commandButton(CommandIDs.doctor, 'Check my setup'));

    this.node.append(header, this._where, this._list, footer);
  }

  /** The last listing, or null before the first one. */
  get catalog(): ICatalog | null {
    return this._catalog;
  }

  /** Remember where the lessons are (after the Launcher card copied them somewhere) and list them again. */
  setFolder(folder: string | null): Promise<void> {
    this._folder = folder;
    return this.refresh();
  }

  /** The folder the server searches from: where lessons were last found, else the learner's current folder. */
  get hint(): string {
    return this._folder ?? this._cwd();
  }

  /** List the lessons again; a change of files while hidden waits until the panel shows. */
  async refresh(): Promise<void> {
    if (!this.isVisible) {
      this._stale = true;
      return;
    }
    this._stale = false;
    const request = ++this._request;
    try {
      let catalog: ICatalog;
      try {
        catalog = await listLessons(this.hint);
      } catch (error) {
        if (this._folder === null) {
          throw error;
        }
        this._folder = null; // the folder was moved or deleted: search from the current folder again
        catalog = await listLessons(this.hint);
      }
      if (request === this._request) {
        this._catalog = catalog;
        this._folder = catalog.folder;
        this._render(catalog);
      }
    } catch (error) {
      if (request === this._request) {
        this._where.textContent = `Could not list the lessons: ${(error as Error).message}`;
        this._where.classList.add('tl-lab-error');
      }
    }
  }

  /** Refresh soon (several saves in a row cause one listing). */
  scheduleRefresh(): void {
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => void this.refresh(), 400);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (this._stale || this._catalog === null) {
      void this.refresh();
    }
  }

  private _render(catalog: ICatalog): void {
    this._where.classList.remove('tl-lab-error');
    if (catalog.lessons.length === 0) {
      this._where.textContent =
        'No lesson notebooks came with this installation of tl_lab: reinstall tl-lab.';
    } else if (catalog.folder === null) {
      const target = [this._cwd(), 'tl_lab_lessons'].filter(Boolean).join('/');
      this._where.textContent = `The lessons are not in your workspace yet: opening one copies them into ${target}/.`;
    } else {
      const done = catalog.lessons.filter(l => l.completed).length;
      const where = catalog.folder ? `${catalog.folder}/` : 'the top folder';
      this._where.textContent = `In ${where} · ${done} of ${catalog.lessons.length} run to the end`;
    }
    this._list.replaceChildren(...catalog.lessons.map(l => this._item(l)));
  }

  private _item(lesson: ILesson): HTMLLIElement {
    const li = el('li', 'tl-lab-lesson');
    li.dataset.name = lesson.name;
    li.classList.toggle('tl-lab-lesson-completed', lesson.completed);
    li.classList.add(`tl-lab-lesson-${lesson.state}`);

    const open = el('button', 'tl-lab-lesson-open');
    open.title = lesson.path ? `Open ${lesson.path}` : `Copy the lessons into your workspace and open ${lesson.name}`;
    const number = lesson.number === null ? '•' : String(lesson.number).padStart(2, '0');
    open.appendChild(el('span', 'tl-lab-lesson-number', number));
    const text = el('span', 'tl-lab-lesson-text');
    text.appendChild(el('span', 'tl-lab-lesson-title', lesson.title));
    if (lesson.goal) {
      const goal = el('span', 'tl-lab-lesson-goal', lesson.goal);
      goal.title = lesson.goal; // the whole goal when the panel clamps it to three lines
      text.appendChild(goal);
    }
    open.appendChild(text);
    if (lesson.checks) {
      const { checked, total } = lesson.checks;
      const checks = el('span', 'tl-lab-lesson-checks', `${checked} of ${total} checked`);
      checks.title = `You have checked ${checked} of this lesson's ${total} questions (tl_lab.exercises)`;
      checks.classList.toggle('tl-lab-lesson-checks-all', checked === total);
      text.appendChild(checks);
    }
    if (lesson.completed) {
      const done = el('span', 'tl-lab-lesson-done', '✓');
      done.title = 'You ran this lesson to the end';
      open.appendChild(done);
    }
    open.onclick = () =>
      void this._commands.execute(CommandIDs.openLesson, { name: lesson.name, path: this.hint });
    li.appendChild(open);

    const note = this._note(lesson);
    if (note) {
      li.appendChild(note);
    }
    return li;
  }

  private _note(lesson: ILesson): HTMLElement | null {
    const note = el('div', 'tl-lab-lesson-note');
    switch (lesson.state) {
      case 'edited':
        note.textContent = 'Your edited copy';
        return note;
      case 'update':
      case 'differs': {
        note.textContent =
          lesson.state === 'update'
            ? 'A newer version came with tl_lab. '
            : 'Differs from the packaged lesson. ';
        const button = el('button', 'tl-lab-get-update');
        if (lesson.update_path) {
          button.textContent = 'Open it';
          button.onclick = () =>
            void this._commands.execute('docmanager:open', { path: lesson.update_path!, factory: 'Notebook' });
        } else {
          button.textContent = 'Get it as a separate copy';
          button.title = 'Your copy stays as it is; the packaged version is saved next to it';
          button.onclick = () =>
            void this._commands.execute(CommandIDs.getUpdate, { name: lesson.name, path: this.hint });
        }
        note.appendChild(button);
        return note;
      }
      default:
        return null;
    }
  }

  private _commandButton(command: string, label: string): HTMLButtonElement {
    const button = el('button', 'jp-Button jp-mod-styled jp-mod-reject tl-lab-command', label);
    button.dataset.command = command;
    button.onclick = () => void this._commands.execute(command);
    return button;
  }

  private _commands: CommandRegistry;
  private _cwd: () => string;
  private _folder: string | null = null;
  private _catalog: ICatalog | null = null;
  private _where: HTMLParagraphElement;
  private _list: HTMLOListElement;
  private _stale = true;
  private _request = 0;
  private _timer = 0;
}
