/* Intrusive doubly linked lists: a struct sl_link inside each element, a
 * struct sl_link as the head. Removing an element needs no search, which
 * keeps closing a connection O(1) whatever list it is on. */
#ifndef SL_CORE_LIST_H
#define SL_CORE_LIST_H

struct sl_link {
    struct sl_link *prev, *next;
};

static inline void sl_list_init(struct sl_link *head)
{
    head->prev = head->next = head;
}

static inline int sl_list_empty(const struct sl_link *head)
{
    return head->next == head;
}

/* Inserts n first. */
static inline void sl_list_add(struct sl_link *head, struct sl_link *n)
{
    n->next = head->next;
    n->prev = head;
    head->next->prev = n;
    head->next = n;
}

/* Inserts n last. */
static inline void sl_list_push(struct sl_link *head, struct sl_link *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

/* Unlinks n and leaves it a list of its own, so a second del is harmless. */
static inline void sl_list_del(struct sl_link *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#endif
