       IDENTIFICATION DIVISION.
       PROGRAM-ID. MAIN.
       ENVIRONMENT DIVISION.
       INPUT-OUTPUT SECTION.
       FILE-CONTROL.
           SELECT SYSIN ASSIGN TO KEYBOARD ORGANIZATION LINE SEQUENTIAL.
       DATA DIVISION.
       FILE SECTION.
       FD SYSIN.
       01 IN-LINE            PIC X(256).
       WORKING-STORAGE SECTION.
       01 WS-EOF             PIC X VALUE "N".
       01 WS-TOTAL           PIC S9(18) VALUE 0.
       01 WS-TOKEN           PIC X(64).
       01 WS-PTR             PIC 9(4).
       01 WS-ARG             PIC X(64).
       01 WS-ARGC            PIC 9(4).
       01 WS-I               PIC 9(4).
       01 WS-OUT             PIC -(18)9.
       PROCEDURE DIVISION.
           OPEN INPUT SYSIN
           PERFORM UNTIL WS-EOF = "Y"
               READ SYSIN
                   AT END MOVE "Y" TO WS-EOF
                   NOT AT END PERFORM ADD-LINE
               END-READ
           END-PERFORM
           CLOSE SYSIN
           ACCEPT WS-ARGC FROM ARGUMENT-NUMBER
           PERFORM VARYING WS-I FROM 1 BY 1 UNTIL WS-I > WS-ARGC
               ACCEPT WS-ARG FROM ARGUMENT-VALUE
               ADD FUNCTION NUMVAL(WS-ARG) TO WS-TOTAL
           END-PERFORM
           MOVE WS-TOTAL TO WS-OUT
           DISPLAY FUNCTION TRIM(WS-OUT)
           STOP RUN.
       ADD-LINE.
           MOVE 1 TO WS-PTR
           PERFORM UNTIL WS-PTR > 256
               MOVE SPACES TO WS-TOKEN
               UNSTRING IN-LINE DELIMITED BY ALL SPACES
                   INTO WS-TOKEN WITH POINTER WS-PTR
               END-UNSTRING
               IF WS-TOKEN NOT = SPACES
                   ADD FUNCTION NUMVAL(WS-TOKEN) TO WS-TOTAL
               END-IF
           END-PERFORM.
