#include <stdio.h>
#include <histedit.h>

// el_set and history are variadic, which Swift cannot call: these wrappers fix each use's arguments.

typedef char *(*sdrepl_prompt_fn)(EditLine *);
typedef unsigned char (*sdrepl_key_fn)(EditLine *, int);
typedef int (*sdrepl_getc_fn)(EditLine *, wchar_t *);

static inline int sdrepl_el_set_prompt(EditLine *el, sdrepl_prompt_fn fn) { return el_set(el, EL_PROMPT, fn); }
static inline int sdrepl_el_set_editor(EditLine *el, const char *mode) { return el_set(el, EL_EDITOR, mode); }
static inline int sdrepl_el_set_history(EditLine *el, History *h) { return el_set(el, EL_HIST, history, h); }
static inline int sdrepl_el_set_getcfn(EditLine *el, sdrepl_getc_fn fn) { return el_set(el, EL_GETCFN, fn); }
static inline int sdrepl_el_addfn(EditLine *el, const char *name, const char *help, sdrepl_key_fn fn) {
    return el_set(el, EL_ADDFN, name, help, fn);
}
static inline int sdrepl_el_bind(EditLine *el, const char *key, const char *fn) {
    return el_set(el, EL_BIND, key, fn, NULL);
}
// After Ctrl-Z and fg: the shell left the terminal in its own (cooked) mode; set libedit's raw mode
// again and redraw the prompt and the line.
static inline void sdrepl_el_resume(EditLine *el) {
    el_set(el, EL_PREP_TERM, 0);
    el_set(el, EL_PREP_TERM, 1);
    el_set(el, EL_REFRESH);
}

static inline int sdrepl_history_setsize(History *h, int size) { HistEvent ev; return history(h, &ev, H_SETSIZE, size); }
static inline int sdrepl_history_setunique(History *h, int unique) { HistEvent ev; return history(h, &ev, H_SETUNIQUE, unique); }
static inline int sdrepl_history_enter(History *h, const char *line) { HistEvent ev; return history(h, &ev, H_ENTER, line); }
static inline int sdrepl_history_load(History *h, const char *path) { HistEvent ev; return history(h, &ev, H_LOAD, path); }
static inline int sdrepl_history_save(History *h, const char *path) { HistEvent ev; return history(h, &ev, H_SAVE, path); }

// Terminal size in cells and pixels (ioctl is variadic too).
#include <sys/ioctl.h>
static inline int sdrepl_window_size(int fd, struct winsize *size) { return ioctl(fd, TIOCGWINSZ, size); }
