/* list: an intrusive doubly linked list with a sentinel head. Not thread-safe: each list
 * belongs to one thread. Used for O(1) idle-timeout queues. */
#ifndef ECHOD_LIST_H
#define ECHOD_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list_node {
    struct list_node *prev, *next;
};

#define list_entry(node, type, member) ((type *)((char *)(node)-offsetof(type, member)))

/* An empty list (or an unlinked node). */
static inline void list_init(struct list_node *head)
{
    head->prev = head->next = head;
}

/* Whether the list holds nothing. */
static inline bool list_is_empty(const struct list_node *head)
{
    return head->next == head;
}

/* Unlink n and leave it self-linked, so a second unlink is harmless. */
static inline void list_unlink(struct list_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* Link n as the newest entry. */
static inline void list_push_back(struct list_node *head, struct list_node *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

/* Move an already linked n to the newest end. */
static inline void list_move_back(struct list_node *head, struct list_node *n)
{
    list_unlink(n);
    list_push_back(head, n);
}

#endif
