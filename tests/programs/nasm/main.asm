; Sum of the integers on stdin and in the command-line arguments (x86-64 Linux).
section .bss
    buf     resb 65536
    outbuf     resb 32

section .text
global _start

; parse: rsi = NUL- or whitespace-terminated string -> rax = value, rsi after it
parse:
    xor     rax, rax
    xor     r8, r8                  ; negative flag
    cmp     byte [rsi], '-'
    jne     .digits
    mov     r8, 1
    inc     rsi
.digits:
    movzx   rcx, byte [rsi]
    sub     rcx, '0'
    cmp     rcx, 9
    ja      .done
    imul    rax, rax, 10
    add     rax, rcx
    inc     rsi
    jmp     .digits
.done:
    test    r8, r8
    jz      .ret
    neg     rax
.ret:
    ret

_start:
    xor     r12, r12                ; total
    mov     r13, rsp                ; argc at [rsp]
    xor     r14, r14                ; bytes read
.read:
    mov     rax, 0                  ; read(0, buf + r14, 65535 - r14)
    mov     rdi, 0
    lea     rsi, [buf + r14]
    mov     rdx, 65535
    sub     rdx, r14
    jz      .parse_stdin
    syscall
    test    rax, rax
    jle     .parse_stdin
    add     r14, rax
    jmp     .read
.parse_stdin:
    mov     byte [buf + r14], 0
    lea     rsi, [buf]
.skip:
    movzx   rcx, byte [rsi]
    test    rcx, rcx
    jz      .args
    cmp     rcx, ' '
    jbe     .next_char
    call    parse
    add     r12, rax
    jmp     .skip
.next_char:
    inc     rsi
    jmp     .skip
.args:
    mov     rbx, [r13]              ; argc
    mov     r15, 1
.arg_loop:
    cmp     r15, rbx
    jge     .print
    mov     rsi, [r13 + 8 + r15 * 8]
    call    parse
    add     r12, rax
    inc     r15
    jmp     .arg_loop
.print:
    lea     rdi, [outbuf + 31]
    mov     byte [rdi], 10
    mov     rax, r12
    xor     r9, r9
    test    rax, rax
    jns     .conv
    neg     rax
    mov     r9, 1
.conv:
    mov     rcx, 10
.conv_loop:
    xor     rdx, rdx
    div     rcx
    add     dl, '0'
    dec     rdi
    mov     [rdi], dl
    test    rax, rax
    jnz     .conv_loop
    test    r9, r9
    jz      .write
    dec     rdi
    mov     byte [rdi], '-'
.write:
    lea     rdx, [outbuf + 32]
    sub     rdx, rdi
    mov     rsi, rdi
    mov     rax, 1
    mov     rdi, 1
    syscall
    mov     rax, 60
    xor     rdi, rdi
    syscall
